import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromWire, toWire, type ProcessorAlias, type ProcessorRef, type RunTaskMessage } from '../../src/executors/protocol.js';
import { fcParams } from '../support/property.js';

// A task travels to a worker as a flat array (TaskWire): whatever fields it has, the worker reads back
// the same task, and a structured clone of the array carries it as well.

const record = fc.dictionary(fc.string({ minLength: 1, maxLength: 4 }), fc.jsonValue(), { maxKeys: 3 });

/** A processor reference with or without state, as a module (with an alias or not) or by its alias. */
const processor: fc.Arbitrary<ProcessorRef | ProcessorAlias> = fc.oneof(
  fc.record(
    { module: fc.webUrl(), exportName: fc.string({ minLength: 1 }), state: record, instance: fc.nat(), alias: fc.nat() },
    { requiredKeys: ['module', 'exportName'] },
  ),
  fc.record({ alias: fc.nat(), state: record, instance: fc.nat() }, { requiredKeys: ['alias'] }),
);

const task: fc.Arbitrary<RunTaskMessage> = fc
  .record(
    {
      id: fc.nat(),
      processor,
      input: fc.jsonValue(),
      name: fc.string({ minLength: 1 }),
      runId: fc.uuid(),
      attempt: fc.integer({ min: 1, max: 100 }),
      waits: fc.constant(true as const),
      notify: fc.constant(true as const),
      spinMicros: fc.integer({ min: 1, max: 1000 }),
      deps: record,
      answers: fc.dictionary(fc.string({ minLength: 1 }), fc.record({ outcome: fc.constant('answered' as const), value: fc.jsonValue() }), { maxKeys: 2 }),
    },
    { requiredKeys: ['id', 'processor', 'input', 'name', 'runId', 'attempt'] },
  )
  // A state goes with its instance number, as `processorRef` makes it.
  .map((t) => {
    const p = t.processor as { state?: unknown; instance?: number };
    if ((p.state === undefined) !== (p.instance === undefined)) {
      const { state: _state, instance: _instance, ...rest } = p;
      return { ...t, processor: rest as ProcessorRef | ProcessorAlias };
    }
    return t;
  });

describe('a task on the wire', () => {
  it('reads back as the task it was, through a structured clone too', () => {
    fc.assert(
      fc.property(task, (t) => {
        const wire = toWire(t);
        expect(Array.isArray(wire)).toBe(true);
        for (const read of [fromWire(wire), fromWire(structuredClone(wire))]) {
          expect(read).toEqual(t);
          // toEqual passes over keys set to undefined: an optional field comes back only where the task had it.
          expect(Object.keys(read).sort()).toEqual(Object.keys(t).sort());
          expect(Object.keys(read.processor).sort()).toEqual(Object.keys(t.processor).sort());
        }
      }),
      fcParams(200),
    );
  });

  it('leaves the optional slots out when the task has none of them', () => {
    const t: RunTaskMessage = { id: 7, processor: { module: 'file:///p.js', exportName: 'P' }, input: { n: 1 }, name: 's', runId: 'r', attempt: 1 };
    expect(toWire(t)).toEqual([7, { n: 1 }, 's', 'r', 1, 0, 'file:///p.js', 'P']);
    expect(toWire({ ...t, processor: { alias: 9 }, waits: true, notify: true })).toEqual([7, { n: 1 }, 's', 'r', 1, 3, 9]);
  });
});
