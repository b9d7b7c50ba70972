/**
 * The Postgres journal's tables and its one write function, made and brought up to date by
 * numbered migrations recorded in a `migrations` table, under an advisory lock so two processes
 * starting at once do not race. A migration is only ever added at the end, never changed.
 * @internal
 */
import type { PoolClient } from 'pg';

/** One step of the schema: applied once, in order, inside the migrating transaction. */
interface Migration {
  readonly version: number;
  readonly name: string;
  sql(s: string, channel: string): string;
}

/**
 * The write function: applies a group of writes (creates, commits, input entries, input clears)
 * in one round trip and one transaction, each checked against its run's row first, so a refused
 * write changes nothing and the others go on. Returns one outcome per write, in order:
 * `["ok"]`, `["ok", stored]` (an input entry: whether it was stored), `["conflict"]`, `["nf"]`
 * (no such run), `["lease", storedToken]`, `["seq", storedLastSeq]`. A write marked `retry` is the
 * same write sent again after a lost connection: one already applied reports `["ok"]`.
 */
function applyFunction(s: string, channel: string): string {
  return `
CREATE OR REPLACE FUNCTION ${s}.apply(works jsonb) RETURNS jsonb LANGUAGE plpgsql AS $fn$
DECLARE
  w jsonb;
  p jsonb;
  outcomes jsonb := '[]'::jsonb;
  head record;
  id text;
  events integer;
  retried boolean;
BEGIN
  FOR w IN SELECT value FROM jsonb_array_elements(works) LOOP
    id := w->>'id';
    retried := coalesce((w->>'retry')::boolean, false);
    IF w->>'t' = 'm' THEN
      events := jsonb_array_length(w->'ev');
      p := coalesce(w->'p', '{}'::jsonb);
      -- The fence and the write in one statement: the token must be the batch's, and its events must continue the run's.
      UPDATE ${s}.runs SET
        status = CASE WHEN p ? 'status' THEN p->>'status' ELSE status END,
        updated_at = CASE WHEN p ? 'updated_at' THEN (p->>'updated_at')::bigint ELSE updated_at END,
        human_in_loop = CASE WHEN p ? 'human_in_loop' THEN (p->>'human_in_loop')::boolean ELSE human_in_loop END,
        ended_at = CASE WHEN p ? 'ended_at' THEN (p->>'ended_at')::bigint ELSE ended_at END,
        error = CASE WHEN p ? 'error' THEN p->>'error' ELSE error END,
        output = CASE WHEN p ? 'output' THEN p->>'output' ELSE output END,
        retried_by = CASE WHEN p ? 'retried_by' THEN p->>'retried_by' ELSE retried_by END,
        ran_by = CASE WHEN p ? 'ran_by' THEN p->>'ran_by' ELSE ran_by END,
        owner_id = CASE WHEN w ? 'rel' THEN NULL ELSE owner_id END,
        owner = CASE WHEN w ? 'rel' THEN NULL ELSE owner END,
        lease_expires_at = CASE WHEN w ? 'rel' THEN 0 ELSE lease_expires_at END,
        last_seq = last_seq + events
      WHERE run_id = id AND lease_token = (w->>'tok')::bigint
        AND (events = 0 OR last_seq = (w->'ev'->0->>0)::integer - 1);
      IF NOT FOUND THEN
        -- Refused: say why (what the run holds now), or, for a write sent again, that it was applied.
        SELECT lease_token, last_seq INTO head FROM ${s}.runs WHERE run_id = id;
        IF NOT FOUND THEN
          outcomes := outcomes || '[["nf"]]'::jsonb;
        ELSIF head.lease_token <> (w->>'tok')::bigint THEN
          outcomes := outcomes || jsonb_build_array(jsonb_build_array('lease', head.lease_token));
        ELSIF retried AND head.last_seq >= (w->'ev'->(events - 1)->>0)::integer THEN
          outcomes := outcomes || '[["ok"]]'::jsonb;
        ELSE
          outcomes := outcomes || jsonb_build_array(jsonb_build_array('seq', head.last_seq));
        END IF;
        CONTINUE;
      END IF;
      IF events > 0 THEN
        INSERT INTO ${s}.events (run_id, seq, data)
          SELECT id, (e->>0)::integer, e->>1 FROM jsonb_array_elements(w->'ev') e;
      END IF;
      -- A run that ended frees a slot of its flow's concurrency: workers may take a queued run.
      IF w ? 'rel' AND p->>'status' IN ('completed', 'failed', 'cancelled') THEN PERFORM pg_notify(${channel}, 'ended'); END IF;
      IF w ? 'st' THEN
        INSERT INTO ${s}.steps (run_id, step, data)
          SELECT id, e->>0, e->>1 FROM jsonb_array_elements(w->'st') e
          ON CONFLICT (run_id, step) DO UPDATE SET data = excluded.data;
      END IF;
      IF w ? 'drop' THEN
        DELETE FROM ${s}.outputs WHERE run_id = id AND step IN (SELECT jsonb_array_elements_text(w->'drop'));
      END IF;
      IF w ? 'out' THEN
        INSERT INTO ${s}.outputs (run_id, step, value)
          SELECT id, e->>0, e->>1 FROM jsonb_array_elements(w->'out') e
          ON CONFLICT (run_id, step) DO UPDATE SET value = excluded.value;
      END IF;
      outcomes := outcomes || '[["ok"]]'::jsonb;
    ELSIF w->>'t' = 'c' THEN
      p := w->'run';
      INSERT INTO ${s}.runs (run_id, flow, fingerprint, version, mode, human_in_loop, status, created_at, updated_at, ended_at,
          error, output, retry_of, retried_by, ran_by, owner_id, owner, lease_token, lease_expires_at, recoveries, last_seq, input,
          priority, concurrency_key)
        VALUES (id, p->>'flow', p->>'fingerprint', coalesce(p->>'version', ''), p->>'mode', (p->>'human_in_loop')::boolean,
          p->>'status', (p->>'created_at')::bigint, (p->>'updated_at')::bigint, (p->>'ended_at')::bigint, p->>'error', p->>'output',
          p->>'retry_of', p->>'retried_by', p->>'ran_by', p->>'owner_id', p->>'owner', (p->>'lease_token')::bigint,
          (p->>'lease_expires_at')::bigint, (p->>'recoveries')::integer, (p->>'last_seq')::integer, p->>'input',
          coalesce((p->>'priority')::integer, 0), p->>'concurrency_key')
        ON CONFLICT (run_id) DO NOTHING;
      IF NOT FOUND THEN
        IF retried AND EXISTS (SELECT 1 FROM ${s}.runs WHERE run_id = id AND created_at = (p->>'created_at')::bigint
            AND lease_token >= (p->>'lease_token')::bigint AND flow = p->>'flow') THEN
          outcomes := outcomes || '[["ok"]]'::jsonb;
        ELSE
          outcomes := outcomes || '[["conflict"]]'::jsonb;
        END IF;
        CONTINUE;
      END IF;
      IF jsonb_array_length(w->'ev') > 0 THEN
        INSERT INTO ${s}.events (run_id, seq, data)
          SELECT id, (e->>0)::integer, e->>1 FROM jsonb_array_elements(w->'ev') e;
      END IF;
      IF p->>'status' = 'pending' THEN PERFORM pg_notify(${channel}, 'queued'); END IF;
      outcomes := outcomes || '[["ok"]]'::jsonb;
    ELSIF w->>'t' = 'i' THEN
      PERFORM 1 FROM ${s}.runs WHERE run_id = id;
      IF NOT FOUND THEN outcomes := outcomes || '[["nf"]]'::jsonb; CONTINUE; END IF;
      INSERT INTO ${s}.inputs (run_id, key, outcome, value, at)
        VALUES (id, w->>'key', w->>'outcome', w->>'value', (w->>'at')::bigint)
        ON CONFLICT (run_id, key) DO NOTHING;
      IF FOUND THEN
        PERFORM pg_notify(${channel}, 'input:' || id);
        outcomes := outcomes || '[["ok", true]]'::jsonb;
      ELSIF retried AND EXISTS (SELECT 1 FROM ${s}.inputs WHERE run_id = id AND key = w->>'key' AND outcome = w->>'outcome'
          AND at = (w->>'at')::bigint AND value IS NOT DISTINCT FROM w->>'value') THEN
        outcomes := outcomes || '[["ok", true]]'::jsonb;
      ELSE
        outcomes := outcomes || '[["ok", false]]'::jsonb;
      END IF;
    ELSIF w->>'t' = 'r' THEN
      -- A lease renewed with the commits, so its row is locked in the same order as theirs.
      UPDATE ${s}.runs SET lease_expires_at = (w->>'exp')::bigint
        WHERE run_id = id AND lease_token = (w->>'tok')::bigint AND owner_id = w->>'own';
      outcomes := outcomes || jsonb_build_array(jsonb_build_array('ok', FOUND));
    ELSIF w->>'t' = 'x' THEN
      PERFORM 1 FROM ${s}.runs WHERE run_id = id;
      IF NOT FOUND THEN outcomes := outcomes || '[["nf"]]'::jsonb; CONTINUE; END IF;
      DELETE FROM ${s}.inputs WHERE run_id = id AND key IN (SELECT jsonb_array_elements_text(w->'keys'));
      outcomes := outcomes || '[["ok"]]'::jsonb;
    ELSE
      RAISE EXCEPTION 'weir: unknown write %', w->>'t';
    END IF;
  END LOOP;
  RETURN outcomes;
END
$fn$;`;
}

/**
 * The claim function: takes up to `p_limit` runs for an owner, each taken by exactly one caller
 * whatever the number of processes: first runs whose lease ran out (a takeover: token and
 * recoveries raised), then, with `p_queued`, queued runs (`pending`, never started), highest
 * priority first, oldest first, within each flow's `c` (runs at once) and `k` (runs at once per
 * concurrency key) limits. Queued claims hold an advisory lock, so the limits' counts are exact
 * across processes. `p_flows` holds `{ f: flow, v: version, c?, k? }` for each flow the caller
 * runs; only runs of those flows at those versions are taken.
 */
function claimFunction(s: string): string {
  return `
CREATE OR REPLACE FUNCTION ${s}.claim(p_owner_id text, p_owner text, p_flows jsonb, p_limit integer, p_expires bigint, p_now bigint,
    p_queued boolean, p_lock text, p_skip text[]) RETURNS SETOF ${s}.runs LANGUAGE plpgsql AS $fn$
DECLARE
  taken integer := 0;
  r ${s}.runs;
  f jsonb;
  flow_running jsonb := '{}'::jsonb;
  key_running jsonb := '{}'::jsonb;
  n integer;
  k text;
BEGIN
  RETURN QUERY
    UPDATE ${s}.runs u SET owner_id = p_owner_id, owner = p_owner, lease_token = u.lease_token + 1,
        recoveries = u.recoveries + (CASE WHEN u.owner_id IS NULL THEN 0 ELSE 1 END), lease_expires_at = p_expires
      FROM (SELECT c.run_id FROM ${s}.runs c
            WHERE c.status = 'running' AND c.lease_expires_at < p_now AND NOT (c.run_id = ANY(p_skip))
              AND EXISTS (SELECT 1 FROM jsonb_array_elements(p_flows) e WHERE e->>'f' = c.flow AND e->>'v' = c.version)
            ORDER BY c.lease_expires_at LIMIT p_limit FOR UPDATE SKIP LOCKED) stale
      WHERE u.run_id = stale.run_id
      RETURNING u.*;
  GET DIAGNOSTICS taken = ROW_COUNT;
  IF NOT p_queued OR taken >= p_limit THEN RETURN; END IF;
  IF NOT EXISTS (SELECT 1 FROM jsonb_array_elements(p_flows) e WHERE e ? 'c' OR e ? 'k') THEN
    -- No limits to count: one statement, and claimers never wait for each other.
    RETURN QUERY
      UPDATE ${s}.runs u SET status = 'running', owner_id = p_owner_id, owner = p_owner, lease_token = u.lease_token + 1,
          lease_expires_at = p_expires, updated_at = p_now
        FROM (SELECT c.run_id FROM ${s}.runs c
              WHERE c.status = 'pending'
                AND EXISTS (SELECT 1 FROM jsonb_array_elements(p_flows) e WHERE e->>'f' = c.flow AND e->>'v' = c.version)
              ORDER BY c.priority DESC, c.created_at, c.run_id
              LIMIT p_limit - taken FOR UPDATE SKIP LOCKED) queued
        WHERE u.run_id = queued.run_id
        RETURNING u.*;
    RETURN;
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext(p_lock));
  FOR r IN SELECT * FROM ${s}.runs c
      WHERE c.status = 'pending'
        AND EXISTS (SELECT 1 FROM jsonb_array_elements(p_flows) e WHERE e->>'f' = c.flow AND e->>'v' = c.version)
      ORDER BY c.priority DESC, c.created_at, c.run_id
      LIMIT p_limit * 10 + 100 FOR UPDATE SKIP LOCKED
  LOOP
    SELECT e INTO f FROM jsonb_array_elements(p_flows) e WHERE e->>'f' = r.flow AND e->>'v' = r.version LIMIT 1;
    IF f ? 'c' THEN
      IF NOT flow_running ? r.flow THEN
        SELECT count(*) INTO n FROM ${s}.runs WHERE flow = r.flow AND status = 'running';
        flow_running := flow_running || jsonb_build_object(r.flow, n);
      END IF;
      IF (flow_running->>r.flow)::integer >= (f->>'c')::integer THEN CONTINUE; END IF;
    END IF;
    IF f ? 'k' AND r.concurrency_key IS NOT NULL THEN
      k := r.flow || chr(31) || r.concurrency_key;
      IF NOT key_running ? k THEN
        SELECT count(*) INTO n FROM ${s}.runs WHERE flow = r.flow AND concurrency_key = r.concurrency_key AND status = 'running';
        key_running := key_running || jsonb_build_object(k, n);
      END IF;
      IF (key_running->>k)::integer >= (f->>'k')::integer THEN CONTINUE; END IF;
      key_running := jsonb_set(key_running, ARRAY[k], to_jsonb((key_running->>k)::integer + 1));
    END IF;
    IF f ? 'c' THEN flow_running := jsonb_set(flow_running, ARRAY[r.flow], to_jsonb((flow_running->>r.flow)::integer + 1)); END IF;
    UPDATE ${s}.runs SET status = 'running', owner_id = p_owner_id, owner = p_owner, lease_token = lease_token + 1,
        lease_expires_at = p_expires, updated_at = p_now
      WHERE run_id = r.run_id RETURNING * INTO r;
    RETURN NEXT r;
    taken := taken + 1;
    EXIT WHEN taken >= p_limit;
  END LOOP;
  RETURN;
END
$fn$;`;
}

/** In the order they were made; a new one goes at the end with the next version. */
const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'runs, steps, outputs, events, inputs, results and the write function',
    sql: (s, channel) => `
CREATE TABLE ${s}.runs (
  run_id text PRIMARY KEY,
  flow text NOT NULL,
  fingerprint text NOT NULL,
  version text NOT NULL DEFAULT '',
  mode text NOT NULL,
  human_in_loop boolean NOT NULL,
  status text NOT NULL,
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL,
  ended_at bigint,
  error text,
  output text,
  retry_of text,
  retried_by text,
  ran_by text,
  owner_id text,
  owner text,
  lease_token bigint NOT NULL,
  lease_expires_at bigint NOT NULL,
  recoveries integer NOT NULL,
  last_seq integer NOT NULL,
  input text NOT NULL,
  priority integer NOT NULL DEFAULT 0,
  concurrency_key text
);
CREATE INDEX runs_by_status ON ${s}.runs (status, created_at, run_id);
CREATE INDEX runs_by_flow ON ${s}.runs (flow, created_at, run_id);
CREATE INDEX runs_by_created ON ${s}.runs (created_at, run_id);
CREATE INDEX runs_by_lease ON ${s}.runs (lease_expires_at) WHERE status = 'running';
CREATE INDEX runs_queued ON ${s}.runs (priority DESC, created_at, run_id) WHERE status = 'pending';
CREATE INDEX runs_running_by_key ON ${s}.runs (flow, concurrency_key) WHERE status = 'running';
CREATE TABLE ${s}.steps (
  run_id text NOT NULL,
  step text NOT NULL,
  data text NOT NULL,
  PRIMARY KEY (run_id, step)
);
CREATE TABLE ${s}.outputs (
  run_id text NOT NULL,
  step text NOT NULL,
  value text NOT NULL,
  PRIMARY KEY (run_id, step)
);
CREATE TABLE ${s}.events (
  run_id text NOT NULL,
  seq integer NOT NULL,
  data text NOT NULL,
  PRIMARY KEY (run_id, seq)
);
CREATE TABLE ${s}.inputs (
  run_id text NOT NULL,
  key text NOT NULL,
  outcome text NOT NULL,
  value text,
  at bigint NOT NULL,
  n bigserial NOT NULL,
  PRIMARY KEY (run_id, key)
);
CREATE TABLE ${s}.results (
  key text PRIMARY KEY,
  value text NOT NULL,
  written_at bigint NOT NULL
);
CREATE INDEX results_by_age ON ${s}.results (written_at);
${applyFunction(s, channel)}`,
  },
  {
    version: 2,
    name: 'live workers and the flow versions they run; claiming runs',
    sql: (s) => `
CREATE TABLE ${s}.workers (
  worker_id text PRIMARY KEY,
  host text NOT NULL,
  pid integer NOT NULL,
  flows jsonb NOT NULL,
  seen_at bigint NOT NULL,
  expires_at bigint NOT NULL
);
${claimFunction(s)}`,
  },
];

/** The version a database is at once this weir migrated it. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** A string as a SQL literal. */
export function quoteLiteral(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

/** A schema name as SQL: a quoted identifier. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * Brings the schema up to date: nothing to do when its recorded version is current; otherwise,
 * in one transaction under an advisory lock on the schema's name, each migration past the recorded
 * version runs and is recorded, so two processes migrating at once apply each exactly once.
 * @returns the migrations this call applied.
 */
export async function migrate(client: PoolClient, schema: string): Promise<number[]> {
  const s = quoteIdent(schema);
  const versionOf = async (): Promise<number> => {
    const found = await client.query<{ v: number | null }>(
      `SELECT CASE WHEN to_regclass($1) IS NULL THEN NULL ELSE 0 END AS v`,
      [`${s}.migrations`],
    );
    if (found.rows[0]?.v === null) return 0;
    const { rows } = await client.query<{ v: number | null }>(`SELECT max(version)::integer AS v FROM ${s}.migrations`);
    return rows[0]?.v ?? 0;
  };
  if ((await versionOf()) >= SCHEMA_VERSION) return [];
  const applied: number[] = [];
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`weir.migrate.${schema}`]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
    await client.query(`CREATE TABLE IF NOT EXISTS ${s}.migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const current = await versionOf();
    for (const migration of MIGRATIONS) {
      if (migration.version <= current) continue;
      await client.query(migration.sql(s, quoteLiteral(schema)));
      await client.query(`INSERT INTO ${s}.migrations (version, name) VALUES ($1, $2)`, [migration.version, migration.name]);
      applied.push(migration.version);
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
  return applied;
}
