/** A stored run read back as the context that ran it returned it: its outputs, and its `FlowResult`. */
import type { CompiledGraph } from '../graph/compile.js';
import type { FlowResult, StepResult } from '../model/result.js';
import { FlowStatus } from '../model/status.js';
import type { LoadedRun, RunStore } from '../storage/journal/run-store.js';

/** Reads the stored outputs of a run's completed steps. */
export async function outputsOf(store: RunStore, loaded: LoadedRun): Promise<Map<string, unknown>> {
  const outputs = new Map<string, unknown>();
  const reads = loaded.steps
    .filter((s) => s.status === FlowStatus.COMPLETED && s.hasOutput)
    .map(async (s) => {
      const stored = await store.getOutput(s.runId, s.step);
      if (stored !== undefined) outputs.set(s.step, stored.value);
    });
  await Promise.all(reads);
  return outputs;
}

/** The `FlowResult` of a finished stored run, as the context that ran it returned it. */
export async function storedResult(store: RunStore, loaded: LoadedRun, graph: CompiledGraph | undefined): Promise<FlowResult> {
  const { run } = loaded;
  const outputs = await outputsOf(store, loaded);
  const byName = new Map(loaded.steps.map((s) => [s.step, s]));
  const steps: Record<string, StepResult> = {};
  const stepOf = (name: string, output: unknown): StepResult => {
    const record = byName.get(name);
    return {
      name,
      status: record?.status ?? FlowStatus.PENDING,
      startTime: record?.startTime,
      endTime: record?.endTime,
      output: record?.status === FlowStatus.COMPLETED ? output : undefined,
      error: record?.error,
      attempts: record?.attempts ?? [],
    };
  };
  const rootIsLeaf = graph === undefined ? byName.has(run.flow) && byName.get(run.flow)?.composite !== true : graph.root.processor !== undefined;
  let output: unknown = run.output;
  if (graph !== undefined) {
    // Composites' outputs are assembled from their children's, as a live run does.
    const assembled: unknown[] = new Array(graph.nodes.length);
    for (let i = graph.nodes.length - 1; i >= 0; i--) {
      const node = graph.nodes[i]!;
      if (node.processor !== undefined) {
        assembled[i] = outputs.get(node.name);
      } else {
        const own: Record<string, unknown> = {};
        for (const child of node.children) {
          const name = graph.nodes[child]!.name;
          if (byName.get(name)?.status === FlowStatus.COMPLETED) own[name] = assembled[child];
        }
        assembled[i] = own;
      }
      if (i !== 0 || node.processor !== undefined) steps[node.name] = stepOf(node.name, assembled[i]);
    }
    output = graph.root.processor === undefined ? assembled[0] : run.status === FlowStatus.COMPLETED ? run.output : undefined;
  } else {
    // Without the flow's code, a composite's record names its children: its output is assembled from theirs.
    const assemble = (name: string, depth: number): unknown => {
      const record = byName.get(name);
      if (record?.composite !== true) return outputs.get(name);
      const own: Record<string, unknown> = {};
      if (depth > 64) return own;
      for (const child of record.children ?? []) if (byName.get(child)?.status === FlowStatus.COMPLETED) own[child] = assemble(child, depth + 1);
      return own;
    };
    for (const record of loaded.steps) if (record.step !== run.flow || rootIsLeaf) steps[record.step] = stepOf(record.step, assemble(record.step, 0));
    if (!rootIsLeaf && byName.get(run.flow)?.children !== undefined) output = assemble(run.flow, 0);
  }
  const root = byName.get(run.flow);
  return {
    runId: run.runId,
    processId: run.ranBy ?? (run.owner === undefined ? '' : run.owner.processId.split(':').slice(0, 2).join(':')),
    name: run.flow,
    status: run.status,
    startTime: run.createdAt,
    endTime: run.endedAt ?? run.updatedAt,
    output,
    error: run.error,
    attempts: rootIsLeaf ? (root?.attempts ?? []) : [],
    steps,
  };
}
