// One cold start, in a fresh process, of the built weir: prints one JSON line of marks, in ms since
// the process started (`performance.now()`), then exits at once. Imports nothing before weir, so
// `imported - start` is weir's whole import, zod included.
// argv: <weir's index.js> <case> [db]; case: import | import+<package> | context | recover
type Weir = typeof import('../../src/index.js');

const [, , entry, which, db] = process.argv as [string, string, string, string, string | undefined];
const marks: Record<string, number> = { start: performance.now() };
const done = (): never => {
  process.stdout.write(`${JSON.stringify(marks)}\n`);
  process.exit(0);
};

const weir = (await import(entry)) as Weir;
marks.imported = performance.now();
if (which.startsWith('import+')) {
  // What a run that needs it adds: the package itself, as weir would load it.
  for (const name of which.slice('import+'.length).split('+')) await import(name);
  marks.loaded = performance.now();
}
if (which.startsWith('import')) done();

if (db === undefined) throw new Error(`case ${which} needs a database file`);
const ctx = new weir.FlowContext({ results: weir.ResultsManager.sqlite(db) });
marks.context = performance.now();
if (which === 'context') done();

const { coldChain } = await import('./cold-flow.js');
ctx.register(coldChain(weir));
ctx.on('step_start', () => {
  marks.firstStep = performance.now();
  done();
});
marks.recover = performance.now();
const handles = await ctx.recover();
if (handles.length === 0) throw new Error('recover() took no run over');
