/**
 * Module hooks that run weir's TypeScript sources as the package build compiles them: esbuild (the
 * one tsup uses) with the project's tsconfig and no `keepNames`. tsx keeps names, wrapping every
 * named closure in a call that redefines its `name`, which makes the per-run closures measurably
 * slower than the built package's; a benchmark should time what users run.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { transform } from 'esbuild';

const tsconfig = new URL('../../tsconfig.json', import.meta.url);
const { compilerOptions } = JSON.parse(await readFile(tsconfig, 'utf8'));
const tsconfigRaw = { compilerOptions: { target: compilerOptions.target, verbatimModuleSyntax: compilerOptions.verbatimModuleSyntax } };

const relative = (specifier) => specifier.startsWith('./') || specifier.startsWith('../') || specifier.startsWith('file:') || specifier.startsWith('/');

/** TypeScript sources import each other as `.js` (NodeNext): such an import finds the `.ts` file. */
export async function resolve(specifier, context, next) {
  if (relative(specifier) && specifier.endsWith('.js') && context.parentURL?.endsWith('.ts')) {
    try {
      return await next(`${specifier.slice(0, -3)}.ts`, context);
    } catch {
      // not a TypeScript file: the `.js` itself
    }
  }
  return next(specifier, context);
}

export async function load(url, context, next) {
  if (!url.startsWith('file:') || !url.endsWith('.ts')) return next(url, context);
  const file = fileURLToPath(url);
  const { code } = await transform(await readFile(file, 'utf8'), {
    loader: 'ts',
    format: 'esm',
    target: 'node20',
    sourcemap: 'inline',
    sourcefile: file,
    tsconfigRaw,
  });
  return { format: 'module', source: code, shortCircuit: true };
}
