/** `/api/v1/lists`: runtime block and allow entries of the lists that live in the config (src/admin/lists.ts). */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { LIST_NAMES, type ListChange, type ListName, type ListView } from '../../admin/lists.js';
import type { ApiContext } from './context.js';
import { errors, errorSchema, runtimeEntrySchema } from './schemas.js';

const TAGS = ['lists'];

const listParams = {
  type: 'object',
  required: ['list'],
  properties: { list: { type: 'string', enum: [...LIST_NAMES], description: 'Which list of policy.lists' } },
} as const;

const viewSchema = {
  type: 'object',
  required: ['list', 'editable', 'config', 'runtime'],
  properties: {
    list: { type: 'string' },
    editable: { type: 'boolean' },
    reason: { type: 'string', description: 'Why it is not editable' },
    config: { type: 'array', items: { type: 'string' }, description: 'What the config names for it' },
    runtime: {
      type: 'array',
      items: runtimeEntrySchema,
      description: 'Entries added at run time, searched first',
    },
  },
} as const;

const entryText = { type: 'string', minLength: 1, maxLength: 320 } as const;

/** Status and body of a change that did not happen. */
function refusal(change: ListChange): [number, { error: string }] {
  switch (change.status) {
    case 'invalid':
      return [400, { error: change.problem }];
    case 'not_editable':
      return [409, { error: change.reason }];
    case 'in_config':
      return [409, { error: `${change.key} is written in the config: remove it there` }];
    case 'not_found':
      return [404, { error: `${change.key} is not a runtime entry of this list` }];
    default:
      return [500, { error: 'unexpected change' }];
  }
}

export function listsRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const off = 'runtime list entries need the state store and the lists check';

  app.get(
    '/lists',
    {
      schema: {
        tags: TAGS,
        summary: 'Every block and allow list: editable or not, config items, runtime entries',
        response: {
          200: {
            type: 'object',
            required: ['lists'],
            properties: { lists: { type: 'array', items: viewSchema } },
          },
          ...errors(),
        },
      },
    },
    async (_request, reply: FastifyReply) => {
      const lists = ctx.admin.lists;
      if (!lists) return reply.status(503).send({ error: off });
      const views: ListView[] = [];
      for (const name of LIST_NAMES) views.push(await lists.show(name));
      return { lists: views };
    },
  );

  app.get<{ Params: { list: ListName } }>(
    '/lists/:list',
    {
      schema: {
        tags: TAGS,
        summary: 'One list',
        params: listParams,
        response: { 200: viewSchema, ...errors() },
      },
    },
    async (request, reply) => {
      const lists = ctx.admin.lists;
      if (!lists) return reply.status(503).send({ error: off });
      return lists.show(request.params.list);
    },
  );

  app.post<{ Params: { list: ListName }; Body: { entry: string; value?: string } }>(
    '/lists/:list/entries',
    {
      schema: {
        tags: TAGS,
        summary: 'Add (or replace) a runtime entry; 409 for a list backed by a file: table',
        params: listParams,
        body: {
          type: 'object',
          required: ['entry'],
          properties: {
            entry: { ...entryText, description: 'An IP, CIDR, address, domain, .domain or user@' },
            value: {
              type: 'string',
              maxLength: 200,
              description: 'Reply text of a block hit (default: reject_text)',
            },
          },
          additionalProperties: false,
        },
        response: { 201: runtimeEntrySchema, 409: errorSchema, ...errors() },
      },
    },
    async (request, reply) => {
      const lists = ctx.admin.lists;
      if (!lists) return reply.status(503).send({ error: off });
      const { list } = request.params;
      const change = await lists.add(
        list,
        request.body.entry,
        request.body.value ?? '',
        `the admin (API from ${request.ip})`,
      );
      if (change.status !== 'added') {
        const [status, body] = refusal(change);
        return reply.status(status).send(body);
      }
      ctx.audit(request, 'list entry add', { list, entry: change.entry.key });
      return reply.status(201).send(change.entry);
    },
  );

  app.delete<{ Params: { list: ListName }; Querystring: { entry: string } }>(
    '/lists/:list/entries',
    {
      schema: {
        tags: TAGS,
        summary: 'Remove a runtime entry (entries written in the config are removed there: 409)',
        params: listParams,
        querystring: {
          type: 'object',
          required: ['entry'],
          properties: { entry: entryText },
          additionalProperties: false,
        },
        response: {
          200: { type: 'object', required: ['removed'], properties: { removed: { type: 'string' } } },
          404: errorSchema,
          409: errorSchema,
          ...errors(),
        },
      },
    },
    async (request, reply) => {
      const lists = ctx.admin.lists;
      if (!lists) return reply.status(503).send({ error: off });
      const { list } = request.params;
      const change = await lists.remove(list, request.query.entry);
      if (change.status !== 'removed') {
        const [status, body] = refusal(change);
        return reply.status(status).send(body);
      }
      ctx.audit(request, 'list entry remove', { list, entry: change.key });
      return { removed: change.key };
    },
  );
}
