/**
 * `node --import ./bench/loader/register.mjs bench/X.bench.ts`: runs the benchmarks on weir's
 * sources compiled as the package build compiles them (see hooks.mjs).
 */
import { register } from 'node:module';

register('./hooks.mjs', import.meta.url);
