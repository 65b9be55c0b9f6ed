/**
 * Spam phrases: curated lists per language, and a matcher that finds them in a message's words in one pass.
 *
 * Text and phrases go through the same normalisation: Unicode compatibility forms folded (full-width letters,
 * ligatures), accents dropped (`perché` = `perche`: spammers and hurried typists both drop them), lower case,
 * split into words of letters and digits (so punctuation, `%` and apostrophes separate words: `l'argent` is
 * `l argent`, `100% free` is `100 free`), and in words that mix letters and digits the look-alike digits read
 * as letters (`v1agra`, `fr33`). Phrases are word sequences in a trie keyed by word: matching is one walk of
 * at most MAX_PHRASE_WORDS words from each word, so the cost is linear in the words read.
 *
 * A phrase counts once per message (repeating it is not more evidence) under the first language that lists it,
 * so a phrase shared by two lists does not score twice. The lists aim at precision: phrases that ordinary
 * mail (newsletters, shop receipts, IT notices) rarely contains. Single words are few and unambiguous.
 */

export const MAX_PHRASE_WORDS = 8;

/** Languages with a built-in list, in the order a shared phrase is attributed. */
export const BUILTIN_PHRASE_LANGUAGES = ['en', 'it', 'de', 'fr', 'es'] as const;

// prettier-ignore
export const BUILTIN_PHRASES: Readonly<Record<(typeof BUILTIN_PHRASE_LANGUAGES)[number], readonly string[]>> = {
  en: [
    'act now', 'limited time offer', 'once in a lifetime opportunity', 'risk free', '100% free',
    'no credit check', 'no questions asked', 'claim your prize', 'claim your reward', 'you have been selected',
    'you have won', 'you are a winner', 'winning notification', 'lottery winner', 'unclaimed funds',
    'next of kin', 'dear beneficiary', 'dear friend', 'consignment box', 'compensation fund',
    'million dollars', 'million usd', 'western union', 'moneygram', 'kindly reply', 'kindly send',
    'strictly confidential', 'urgent business proposal', 'make money fast', 'earn extra cash', 'extra income',
    'work from home', 'be your own boss', 'double your income', 'financial freedom', 'get rich quick',
    'guaranteed income', 'guaranteed returns', 'bitcoin investment', 'binary options', 'lose weight fast',
    'weight loss pills', 'diet pills', 'online pharmacy', 'no prescription', 'viagra', 'cialis',
    'penis enlargement', 'male enhancement', 'hot singles', 'meet singles', 'adult dating', 'online casino',
    'free spins', 'casino bonus', 'your account has been suspended', 'your account will be closed',
    'your mailbox is full', 'mailbox quota', 'this is not spam', 'this is not junk', 'seo services',
    'first page of google', 'increase your traffic', 'cheap loans', 'debt relief', 'pre-approved',
    'lowest price guaranteed', 'best price guaranteed', 'buy now and save', 'replica watches',
    'one time mailing', 'this is a one time', 'no removal is necessary', 'you have expressed an interest',
    'to be removed from our', 'with remove in the subject', 'click here to be removed', 'bill s 1618',
    'section 301',
  ],
  it: [
    'guadagna subito', 'guadagni facili', 'guadagno facile', 'soldi facili', 'guadagnare da casa',
    'lavoro da casa', 'lavora da casa', 'diventa ricco', 'libertà finanziaria', 'rendimento garantito',
    'guadagno garantito', 'investimento garantito', 'opzioni binarie', 'offerta imperdibile',
    'occasione unica', 'solo per oggi', 'offerta valida solo oggi', '100% gratis', 'gratis al 100%',
    'hai vinto', 'sei stato selezionato', 'sei il vincitore', 'ritira il tuo premio', 'riscatta il tuo premio',
    'premio in denaro', 'fondi non reclamati', 'gentile beneficiario', 'caro amico', 'parente più prossimo',
    'milioni di dollari', 'strettamente confidenziale', 'proposta commerciale urgente',
    'il tuo account è stato sospeso', 'il tuo account verrà chiuso', 'verifica la tua identità',
    'aggiorna i tuoi dati di pagamento', 'la tua casella di posta è piena', 'casella di posta piena',
    'pacco in giacenza', 'spedizione in giacenza', 'perdere peso velocemente', 'dimagrire velocemente',
    'pillole dimagranti', 'farmacia online', 'senza ricetta', 'incontri per adulti', 'donne single',
    'casinò online', 'giri gratis', 'bonus di benvenuto', 'prestito senza garanzie', 'prestiti veloci',
    'prestito immediato', 'cessione del quinto', 'questo non è spam', 'prezzo più basso garantito',
    'clicca qui per ricevere', 'clicca qui per riscattare',
  ],
  de: [
    'sie haben gewonnen', 'gewinnbenachrichtigung', 'ihr gewinn wartet', 'schnell geld verdienen',
    'geld verdienen von zu hause', 'von zu hause arbeiten', 'finanzielle freiheit', 'garantierte rendite',
    'schnell abnehmen', 'ohne rezept', 'online apotheke', 'ihr konto wurde gesperrt', 'ihr postfach ist voll',
    'lieber freund', 'millionen dollar', 'streng vertraulich', 'freispiele', 'das ist kein spam',
  ],
  fr: [
    'vous avez gagné', 'réclamez votre prix', "gagner de l'argent", 'argent facile', 'travail à domicile',
    'liberté financière', 'rendement garanti', 'perdre du poids', 'sans ordonnance', 'pharmacie en ligne',
    'votre compte a été suspendu', 'votre boîte mail est pleine', 'cher ami', 'millions de dollars',
    'strictement confidentiel', 'casino en ligne', 'tours gratuits', "ceci n'est pas un spam",
  ],
  es: [
    'usted ha ganado', 'has ganado', 'reclame su premio', 'ganar dinero', 'dinero fácil', 'trabajo desde casa',
    'libertad financiera', 'rentabilidad garantizada', 'perder peso', 'sin receta', 'farmacia en línea',
    'su cuenta ha sido suspendida', 'su buzón está lleno', 'querido amigo', 'millones de dólares',
    'estrictamente confidencial', 'casino en línea', 'giros gratis', 'esto no es spam',
  ],
};

const LEET: Readonly<Record<string, string>> = { '0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '7': 't' };
const WORD = /[\p{L}\p{N}]+/gu;
const HAS_LETTER = /\p{L}/u;
const HAS_LEET_DIGIT = /[013457]/;

/** Compatibility-folded, accent-free, lower-case text. */
export function foldText(text: string): string {
  return text
    .normalize('NFKD')
    .replace(/\p{M}+/gu, '')
    .toLowerCase();
}

/** The words of already folded text (see foldText), look-alike digits read as letters in mixed words. */
export function foldedWords(folded: string, max: number): string[] {
  const words: string[] = [];
  for (const match of folded.matchAll(WORD)) {
    if (words.length >= max) break;
    const word = match[0];
    words.push(
      HAS_LEET_DIGIT.test(word) && HAS_LETTER.test(word)
        ? word.replace(/[013457]/g, (d) => LEET[d] ?? d)
        : word,
    );
  }
  return words;
}

interface TrieNode {
  readonly next: Map<string, TrieNode>;
  /** The phrase (as listed) and its language, when a phrase ends here. */
  end?: { readonly phrase: string; readonly language: string };
}

export interface PhraseMatcher {
  /** Distinct phrases found in `words` (and in earlier calls with the same `seen`). */
  match(words: readonly string[], seen: Map<string, Set<string>>): void;
  readonly languages: readonly string[];
}

/** Compiles lists (language → phrases) into one matcher; a phrase listed twice belongs to its first language. */
export function compilePhrases(lists: ReadonlyArray<readonly [string, readonly string[]]>): PhraseMatcher {
  const root: TrieNode = { next: new Map() };
  const languages: string[] = [];
  for (const [language, phrases] of lists) {
    if (!languages.includes(language)) languages.push(language);
    for (const phrase of phrases) {
      const words = foldedWords(foldText(phrase), MAX_PHRASE_WORDS + 1);
      if (words.length === 0 || words.length > MAX_PHRASE_WORDS) continue;
      let node = root;
      for (const word of words) {
        let child = node.next.get(word);
        if (!child) {
          child = { next: new Map() };
          node.next.set(word, child);
        }
        node = child;
      }
      node.end ??= { phrase, language };
    }
  }
  return {
    languages,
    match(words, seen) {
      for (let i = 0; i < words.length; i++) {
        let node: TrieNode | undefined = root;
        for (let j = i; j < words.length && j < i + MAX_PHRASE_WORDS; j++) {
          node = node.next.get(words[j] ?? '');
          if (!node) break;
          if (node.end) {
            let found = seen.get(node.end.language);
            if (!found) {
              found = new Set();
              seen.set(node.end.language, found);
            }
            found.add(node.end.phrase);
          }
        }
      }
    },
  };
}
