#!/usr/bin/env node
// An MCP server that offers everything the MCP conformance suite (0.1.16, `conformance server`)
// asks of a server: tools, resources (with a template and subscriptions), prompts, completion,
// logging, progress, sampling and elicitation requests to the client, several concurrent SSE
// streams, resumable streams (an in-memory event store) and DNS-rebinding protection.
//
// Transport: Streamable HTTP on http://127.0.0.1:$PORT/mcp with stateful sessions (one SDK
// `Server` and one transport per `mcp-session-id`). Plain ESM, no build step.
//
// Environment:
//   PORT          listening port (default 3002), bound on 127.0.0.1 only
//   ASK_CLIENT_ON where server-to-client requests (sampling, elicitation) travel:
//                   "get"  (default) the session's standalone GET stream, as the suite's own
//                          reference server does: the request is lost when the client's GET
//                          stream is not open yet when the tool runs
//                   "post" the SSE answer of the tools/call POST that caused it
//   TRACE=1       log each HTTP request and each server-to-client request on stderr, with
//                 whether the session's GET stream was open (to study ordering races)

import http from 'node:http';
import zlib from 'node:zlib';
import { randomUUID } from 'node:crypto';

import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  CallToolRequestSchema,
  CompleteRequestSchema,
  CreateMessageResultSchema,
  ElicitResultSchema,
  ErrorCode,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListResourcesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  ReadResourceRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
  isInitializeRequest,
} from '@modelcontextprotocol/sdk/types.js';

const PORT = Number(process.env.PORT ?? 3002);
const ASK_CLIENT_ON = process.env.ASK_CLIENT_ON === 'post' ? 'post' : 'get';
const TRACE = process.env.TRACE === '1';
const MAX_BODY = 4 * 1024 * 1024;

const trace = TRACE
  ? (...parts) => console.error(`[${(performance.now() / 1000).toFixed(6)}]`, ...parts)
  : () => {};

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// Media made on the spot: a 2x2 PNG and a short silent WAV.

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'ascii');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

function makePng() {
  const side = 2;
  const header = Buffer.alloc(13);
  header.writeUInt32BE(side, 0);
  header.writeUInt32BE(side, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // truecolour RGB
  const row = [0, 0x1e, 0x90, 0xff, 0xff, 0xa5, 0x00]; // filter byte, then two pixels
  const raw = Buffer.from([...row, ...row]);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', header),
    pngChunk('IDAT', zlib.deflateSync(raw)),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

function makeWav() {
  const rate = 8000;
  const samples = Buffer.alloc(16); // 8 silent 16-bit mono samples
  const fmt = Buffer.alloc(16);
  fmt.writeUInt16LE(1, 0); // PCM
  fmt.writeUInt16LE(1, 2); // mono
  fmt.writeUInt32LE(rate, 4);
  fmt.writeUInt32LE(rate * 2, 8);
  fmt.writeUInt16LE(2, 12);
  fmt.writeUInt16LE(16, 14);
  const part = (id, data) => {
    const head = Buffer.alloc(8);
    head.write(id, 0, 'ascii');
    head.writeUInt32LE(data.length, 4);
    return Buffer.concat([head, data]);
  };
  const body = Buffer.concat([Buffer.from('WAVE', 'ascii'), part('fmt ', fmt), part('data', samples)]);
  return part('RIFF', body);
}

const PNG_BASE64 = makePng().toString('base64');
const WAV_BASE64 = makeWav().toString('base64');

// ---------------------------------------------------------------------------------------------
// Catalogue: resources and prompts.

const RESOURCES = [
  {
    uri: 'test://static-text',
    name: 'Static text',
    description: 'A fixed piece of plain text',
    mimeType: 'text/plain',
    read: () => ({ text: 'Static text resource: the same words every time.' }),
  },
  {
    uri: 'test://static-binary',
    name: 'Static binary',
    description: 'A small PNG image, as a blob',
    mimeType: 'image/png',
    read: () => ({ blob: PNG_BASE64 }),
  },
  {
    uri: 'test://watched-resource',
    name: 'Watched resource',
    description: 'A resource clients may subscribe to',
    mimeType: 'text/plain',
    read: () => ({ text: 'Content of the watched resource.' }),
  },
];

const TEMPLATE = {
  uriTemplate: 'test://template/{id}/data',
  name: 'Data by id',
  description: 'A JSON document generated for the id in the URI',
  mimeType: 'application/json',
  match: /^test:\/\/template\/([^/]+)\/data$/,
};

const PROMPTS = {
  test_simple_prompt: {
    description: 'A prompt without arguments',
    arguments: [],
    messages: () => [{ role: 'user', content: { type: 'text', text: 'Say something simple.' } }],
  },
  test_prompt_with_arguments: {
    description: 'A prompt that fills in two arguments',
    arguments: [
      { name: 'arg1', description: 'The first value', required: true },
      { name: 'arg2', description: 'The second value', required: true },
    ],
    messages: (args) => [
      {
        role: 'user',
        content: { type: 'text', text: `First argument: ${args.arg1}; second argument: ${args.arg2}.` },
      },
    ],
  },
  test_prompt_with_embedded_resource: {
    description: 'A prompt carrying a resource inline',
    arguments: [{ name: 'resourceUri', description: 'URI of the resource to embed', required: true }],
    messages: (args) => [
      {
        role: 'user',
        content: {
          type: 'resource',
          resource: { uri: args.resourceUri, mimeType: 'text/plain', text: `Inline copy of ${args.resourceUri}.` },
        },
      },
      { role: 'user', content: { type: 'text', text: 'Summarise the resource above.' } },
    ],
  },
  test_prompt_with_image: {
    description: 'A prompt carrying an image',
    arguments: [],
    messages: () => [
      { role: 'user', content: { type: 'image', data: PNG_BASE64, mimeType: 'image/png' } },
      { role: 'user', content: { type: 'text', text: 'What colours does this image have?' } },
    ],
  },
};

const COMPLETIONS = {
  arg1: ['alpha', 'apricot', 'avocado', 'banana'],
  arg2: ['red', 'green', 'blue'],
};

// ---------------------------------------------------------------------------------------------
// Tools. Each has a JSON Schema for its input and a `run(args, ctx)`; `ctx` holds the session,
// the SDK's per-request `extra`, and `ask(method, params, schema)` for server-to-client requests.

const NO_ARGS = { type: 'object', properties: {} };

const ELICIT_DEFAULTS_SCHEMA = {
  type: 'object',
  properties: {
    name: { type: 'string', description: 'Full name', default: 'John Doe' },
    age: { type: 'integer', description: 'Age in years', minimum: 0, default: 30 },
    score: { type: 'number', description: 'A score', default: 95.5 },
    status: {
      type: 'string',
      description: 'Account status',
      enum: ['active', 'inactive', 'pending'],
      default: 'active',
    },
    verified: { type: 'boolean', description: 'Verified account', default: true },
  },
};

const ELICIT_ENUMS_SCHEMA = {
  type: 'object',
  properties: {
    untitledSingle: { type: 'string', description: 'Pick one', enum: ['option1', 'option2', 'option3'] },
    titledSingle: {
      type: 'string',
      description: 'Pick one (titled)',
      oneOf: [
        { const: 'value1', title: 'First value' },
        { const: 'value2', title: 'Second value' },
        { const: 'value3', title: 'Third value' },
      ],
    },
    legacyEnum: {
      type: 'string',
      description: 'Pick one (legacy titles)',
      enum: ['opt1', 'opt2', 'opt3'],
      enumNames: ['Option one', 'Option two', 'Option three'],
    },
    untitledMulti: {
      type: 'array',
      description: 'Pick several',
      items: { type: 'string', enum: ['option1', 'option2', 'option3'] },
    },
    titledMulti: {
      type: 'array',
      description: 'Pick several (titled)',
      items: {
        anyOf: [
          { const: 'value1', title: 'First value' },
          { const: 'value2', title: 'Second value' },
          { const: 'value3', title: 'Third value' },
        ],
      },
    },
  },
};

const text = (s) => ({ content: [{ type: 'text', text: s }] });

const TOOLS = [
  {
    name: 'test_simple_text',
    description: 'Answers with one text block',
    inputSchema: NO_ARGS,
    run: () => text('Plain text from test_simple_text.'),
  },
  {
    name: 'test_image_content',
    description: 'Answers with an image block',
    inputSchema: NO_ARGS,
    run: () => ({ content: [{ type: 'image', data: PNG_BASE64, mimeType: 'image/png' }] }),
  },
  {
    name: 'test_audio_content',
    description: 'Answers with an audio block',
    inputSchema: NO_ARGS,
    run: () => ({ content: [{ type: 'audio', data: WAV_BASE64, mimeType: 'audio/wav' }] }),
  },
  {
    name: 'test_embedded_resource',
    description: 'Answers with an embedded resource block',
    inputSchema: NO_ARGS,
    run: () => ({
      content: [
        {
          type: 'resource',
          resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'Embedded resource text.' },
        },
      ],
    }),
  },
  {
    name: 'test_multiple_content_types',
    description: 'Answers with text, image and resource blocks together',
    inputSchema: NO_ARGS,
    run: () => ({
      content: [
        { type: 'text', text: 'Three kinds of content follow.' },
        { type: 'image', data: PNG_BASE64, mimeType: 'image/png' },
        {
          type: 'resource',
          resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json', text: '{"kind":"mixed","n":3}' },
        },
      ],
    }),
  },
  {
    name: 'test_tool_with_logging',
    description: 'Emits three log notifications while it runs',
    inputSchema: NO_ARGS,
    async run(_args, { extra }) {
      for (const [i, step] of ['starting', 'working', 'finishing'].entries()) {
        if (i > 0) await pause(50);
        await extra.sendNotification({
          method: 'notifications/message',
          params: { level: 'info', logger: 'everything-server', data: `test_tool_with_logging: ${step}` },
        });
      }
      return text('Logged three messages.');
    },
  },
  {
    name: 'test_tool_with_progress',
    description: 'Reports progress three times (0, 50, 100 of 100)',
    inputSchema: NO_ARGS,
    async run(_args, { extra }) {
      const token = extra._meta?.progressToken;
      for (const progress of [0, 50, 100]) {
        if (progress > 0) await pause(50);
        if (token !== undefined) {
          await extra.sendNotification({
            method: 'notifications/progress',
            params: { progressToken: token, progress, total: 100, message: `${progress}% done` },
          });
        }
      }
      return text(String(token ?? 'no progress token'));
    },
  },
  {
    name: 'test_error_handling',
    description: 'Always fails, as a tool error (isError)',
    inputSchema: NO_ARGS,
    run: () => ({ isError: true, content: [{ type: 'text', text: 'test_error_handling failed on purpose.' }] }),
  },
  {
    name: 'test_reconnection',
    description: 'Closes its SSE stream mid-call; the answer arrives after the client reconnects',
    inputSchema: NO_ARGS,
    async run(_args, { extra }) {
      extra.closeSSEStream?.();
      await pause(100);
      return text('Answered after the stream was closed and resumed.');
    },
  },
  {
    name: 'test_sampling',
    description: 'Asks the client for an LLM completion (sampling/createMessage)',
    inputSchema: {
      type: 'object',
      properties: { prompt: { type: 'string', description: 'What to ask the model' } },
      required: ['prompt'],
    },
    async run(args, { ask }) {
      const answer = await ask(
        'sampling/createMessage',
        { messages: [{ role: 'user', content: { type: 'text', text: String(args.prompt ?? '') } }], maxTokens: 100 },
        CreateMessageResultSchema,
      );
      const said = Array.isArray(answer.content) ? answer.content.find((c) => c.type === 'text')?.text : answer.content?.text;
      return text(`The model (${answer.model}) said: ${said ?? '(no text)'}`);
    },
  },
  {
    name: 'test_elicitation',
    description: 'Asks the user for a username and an email (elicitation/create)',
    inputSchema: {
      type: 'object',
      properties: { message: { type: 'string', description: 'What to tell the user' } },
      required: ['message'],
    },
    async run(args, { ask }) {
      const answer = await ask(
        'elicitation/create',
        {
          message: String(args.message ?? 'Please fill in the form'),
          requestedSchema: {
            type: 'object',
            properties: {
              username: { type: 'string', description: 'Your user name' },
              email: { type: 'string', description: 'Your email address' },
            },
            required: ['username', 'email'],
          },
        },
        ElicitResultSchema,
      );
      return text(`Elicitation ${answer.action}: ${JSON.stringify(answer.content ?? {})}`);
    },
  },
  {
    name: 'test_elicitation_sep1034_defaults',
    description: 'Elicitation whose schema gives defaults for each primitive type (SEP-1034)',
    inputSchema: NO_ARGS,
    async run(_args, { ask }) {
      const answer = await ask(
        'elicitation/create',
        { message: 'Confirm or change the defaults', requestedSchema: ELICIT_DEFAULTS_SCHEMA },
        ElicitResultSchema,
      );
      return text(`Elicitation ${answer.action}: ${JSON.stringify(answer.content ?? {})}`);
    },
  },
  {
    name: 'test_elicitation_sep1330_enums',
    description: 'Elicitation with every enum schema variant (SEP-1330)',
    inputSchema: NO_ARGS,
    async run(_args, { ask }) {
      const answer = await ask(
        'elicitation/create',
        { message: 'Choose from the lists', requestedSchema: ELICIT_ENUMS_SCHEMA },
        ElicitResultSchema,
      );
      return text(`Elicitation ${answer.action}: ${JSON.stringify(answer.content ?? {})}`);
    },
  },
  {
    name: 'json_schema_2020_12_tool',
    description: 'Its input schema is JSON Schema 2020-12 with $defs and additionalProperties (SEP-1613)',
    inputSchema: {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      $defs: {
        address: { type: 'object', properties: { street: { type: 'string' }, city: { type: 'string' } } },
      },
      properties: { name: { type: 'string' }, address: { $ref: '#/$defs/address' } },
      additionalProperties: false,
    },
    run: (args) => text(`Received ${JSON.stringify(args)}`),
  },
];

const TOOL_BY_NAME = new Map(TOOLS.map((t) => [t.name, t]));

// ---------------------------------------------------------------------------------------------
// Resumability: events of every stream, kept in memory, replayable after a Last-Event-ID.

class MemoryEventStore {
  #events = []; // { id, stream, message } in arrival order
  #seq = 0;

  async storeEvent(stream, message) {
    const id = `${stream}|${++this.#seq}`;
    this.#events.push({ id, stream, message });
    return id;
  }

  async getStreamIdForEventId(id) {
    return this.#events.find((e) => e.id === id)?.stream;
  }

  async replayEventsAfter(lastId, { send }) {
    const at = this.#events.findIndex((e) => e.id === lastId);
    if (at < 0) return '';
    const { stream } = this.#events[at];
    for (const e of this.#events.slice(at + 1)) {
      if (e.stream === stream && Object.keys(e.message).length > 0) await send(e.id, e.message);
    }
    return stream;
  }
}

// ---------------------------------------------------------------------------------------------
// Sessions: one SDK Server and one transport each.

/** @type {Map<string, {server: Server, transport: StreamableHTTPServerTransport, subscriptions: Set<string>, getOpen: boolean}>} */
const sessions = new Map();

function newSession() {
  const session = { subscriptions: new Set(), getOpen: false };
  const server = new Server(
    { name: 'portcullis-everything-server', version: '1.0.0' },
    {
      capabilities: {
        tools: { listChanged: true },
        resources: { subscribe: true, listChanged: true },
        prompts: { listChanged: true },
        logging: {},
        completions: {},
      },
      instructions: 'Test server for the MCP conformance suite.',
    },
  );
  const transport = new StreamableHTTPServerTransport({
    sessionIdGenerator: () => randomUUID(),
    eventStore: new MemoryEventStore(),
    retryInterval: 1000,
    onsessioninitialized: (id) => {
      sessions.set(id, session);
      trace('session', id, 'opened');
    },
  });
  transport.onclose = () => {
    if (transport.sessionId) sessions.delete(transport.sessionId);
    trace('session', transport.sessionId, 'closed');
  };
  session.server = server;
  session.transport = transport;
  registerHandlers(session);
  return session;
}

function registerHandlers(session) {
  const { server } = session;

  server.setRequestHandler(ListToolsRequestSchema, () => ({
    tools: TOOLS.map(({ name, description, inputSchema }) => ({ name, description, inputSchema })),
  }));

  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const tool = TOOL_BY_NAME.get(request.params.name);
    if (!tool) throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${request.params.name}`);
    const ask = (method, params, schema) => {
      trace('ask', method, 'session', session.transport.sessionId, 'via', ASK_CLIENT_ON, 'GET stream open:', session.getOpen);
      return ASK_CLIENT_ON === 'post'
        ? extra.sendRequest({ method, params }, schema)
        : server.request({ method, params }, schema); // no related request: the GET stream
    };
    try {
      return await tool.run(request.params.arguments ?? {}, { session, extra, ask });
    } catch (err) {
      if (err instanceof McpError) throw err;
      return { isError: true, content: [{ type: 'text', text: `${tool.name} failed: ${err?.message ?? err}` }] };
    }
  });

  server.setRequestHandler(ListResourcesRequestSchema, () => ({
    resources: RESOURCES.map(({ uri, name, description, mimeType }) => ({ uri, name, description, mimeType })),
  }));

  server.setRequestHandler(ListResourceTemplatesRequestSchema, () => ({
    resourceTemplates: [
      { uriTemplate: TEMPLATE.uriTemplate, name: TEMPLATE.name, description: TEMPLATE.description, mimeType: TEMPLATE.mimeType },
    ],
  }));

  server.setRequestHandler(ReadResourceRequestSchema, (request) => {
    const { uri } = request.params;
    const fixed = RESOURCES.find((r) => r.uri === uri);
    if (fixed) return { contents: [{ uri, mimeType: fixed.mimeType, ...fixed.read() }] };
    const m = TEMPLATE.match.exec(uri);
    if (m) {
      const id = decodeURIComponent(m[1]);
      return { contents: [{ uri, mimeType: TEMPLATE.mimeType, text: JSON.stringify({ id, note: `generated for id ${id}` }) }] };
    }
    throw new McpError(ErrorCode.InvalidParams, `Unknown resource: ${uri}`);
  });

  server.setRequestHandler(SubscribeRequestSchema, (request) => {
    session.subscriptions.add(request.params.uri);
    return {};
  });

  server.setRequestHandler(UnsubscribeRequestSchema, (request) => {
    session.subscriptions.delete(request.params.uri);
    return {};
  });

  server.setRequestHandler(ListPromptsRequestSchema, () => ({
    prompts: Object.entries(PROMPTS).map(([name, p]) => ({ name, description: p.description, arguments: p.arguments })),
  }));

  server.setRequestHandler(GetPromptRequestSchema, (request) => {
    const prompt = PROMPTS[request.params.name];
    if (!prompt) throw new McpError(ErrorCode.InvalidParams, `Unknown prompt: ${request.params.name}`);
    const args = request.params.arguments ?? {};
    const missing = prompt.arguments.filter((a) => a.required && args[a.name] === undefined).map((a) => a.name);
    if (missing.length) throw new McpError(ErrorCode.InvalidParams, `Missing arguments: ${missing.join(', ')}`);
    return { description: prompt.description, messages: prompt.messages(args) };
  });

  server.setRequestHandler(CompleteRequestSchema, (request) => {
    const { ref, argument } = request.params;
    const pool = ref.type === 'ref/prompt' && PROMPTS[ref.name] ? COMPLETIONS[argument.name] ?? [] : [];
    const values = pool.filter((v) => v.startsWith(argument.value ?? ''));
    return { completion: { values, total: values.length, hasMore: false } };
  });
  // logging/setLevel: the SDK's Server answers it itself when the `logging` capability is on.
}

// ---------------------------------------------------------------------------------------------
// HTTP: /mcp only, loopback Host/Origin only (DNS-rebinding protection), sessions by header.

const LOCAL_NAMES = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);

function hostIsLocal(value) {
  if (!value) return false;
  try {
    return LOCAL_NAMES.has(new URL(`http://${value}`).hostname.toLowerCase());
  } catch {
    return false;
  }
}

function originIsLocal(value) {
  if (value === undefined) return true; // non-browser clients send none
  try {
    return LOCAL_NAMES.has(new URL(value).hostname.toLowerCase());
  } catch {
    return false;
  }
}

function replyError(res, status, code, message, headers = {}) {
  if (res.headersSent) return res.end();
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    const parts = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(Object.assign(new Error('body too large'), { status: 413 }));
        req.destroy();
      } else parts.push(chunk);
    });
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(parts).toString('utf8')));
      } catch {
        reject(Object.assign(new Error('Parse error'), { status: 400, code: -32700 }));
      }
    });
    req.on('error', reject);
  });
}

const startsSession = (body) => (Array.isArray(body) ? body.some(isInitializeRequest) : isInitializeRequest(body));

async function handle(req, res) {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const sessionId = req.headers['mcp-session-id'];
  trace('http', req.method, url.pathname, 'session', sessionId ?? '-');
  if (url.pathname !== '/mcp') return replyError(res, 404, -32000, 'Not found');
  if (!hostIsLocal(req.headers.host) || !originIsLocal(req.headers.origin)) {
    return replyError(res, 403, -32000, 'Forbidden: Host or Origin is not a loopback name');
  }

  if (req.method === 'POST') {
    let body;
    try {
      body = await readJson(req);
    } catch (err) {
      return replyError(res, err.status ?? 400, err.code ?? -32000, err.message);
    }
    if (sessionId !== undefined) {
      const session = sessions.get(sessionId);
      if (!session) return replyError(res, 404, -32001, 'Session not found');
      return session.transport.handleRequest(req, res, body);
    }
    if (!startsSession(body)) return replyError(res, 400, -32000, 'Bad Request: no session; send initialize first');
    const session = newSession();
    await session.server.connect(session.transport);
    return session.transport.handleRequest(req, res, body);
  }

  if (req.method === 'GET' || req.method === 'DELETE') {
    if (sessionId === undefined) return replyError(res, 400, -32000, 'Bad Request: missing mcp-session-id');
    const session = sessions.get(sessionId);
    if (!session) return replyError(res, 404, -32001, 'Session not found');
    if (req.method === 'GET' && !req.headers['last-event-id']) {
      // The SDK registers the stream synchronously once the request reaches it; note it for TRACE.
      session.getOpen = true;
      res.on('close', () => {
        session.getOpen = false;
      });
    }
    return session.transport.handleRequest(req, res);
  }

  return replyError(res, 405, -32000, 'Method not allowed', { allow: 'GET, POST, DELETE' });
}

const httpServer = http.createServer((req, res) => {
  handle(req, res).catch((err) => {
    console.error('request failed:', err);
    replyError(res, 500, -32603, 'Internal error');
  });
});

httpServer.listen(PORT, '127.0.0.1', () => {
  console.log(`everything-server: http://127.0.0.1:${PORT}/mcp (server-to-client requests on the ${ASK_CLIENT_ON.toUpperCase()} stream)`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, async () => {
    for (const { transport } of sessions.values()) await transport.close().catch(() => {});
    httpServer.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  });
}
