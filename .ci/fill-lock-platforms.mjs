#!/usr/bin/env node
/**
 * The registry mirror this project is built against lacks rollup's platform packages other than
 * linux-x64-gnu, so `npm install` leaves them out of package-lock.json and `npm ci` then refuses the
 * lock file. This adds an entry for each missing one, with the `os`, `cpu` and `libc` that make npm
 * skip it on every other platform. Run it after an `npm install` that regenerated the lock file.
 */
import { readFileSync, writeFileSync } from 'node:fs';

const path = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(path, 'utf8'));
const packages = lock.packages;
let added = 0;
for (const owner of Object.keys(packages).filter((key) => key.endsWith('node_modules/rollup'))) {
  for (const [name, version] of Object.entries(packages[owner].optionalDependencies ?? {})) {
    const key = `${owner.slice(0, -'rollup'.length)}${name}`;
    if (packages[key] !== undefined || !name.startsWith('@rollup/rollup-')) continue;
    const [os, arch, abi = ''] = name.slice('@rollup/rollup-'.length).split('-');
    const entry = { version, cpu: [arch], dev: true, license: 'MIT', optional: true, os: [os] };
    if (os === 'linux') entry.libc = [abi.startsWith('musl') ? 'musl' : 'glibc'];
    packages[key] = entry;
    added++;
  }
}
const sorted = Object.fromEntries(Object.entries(packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : a > b ? 1 : 0)));
writeFileSync(path, `${JSON.stringify({ ...lock, packages: sorted }, null, 2)}\n`);
console.log(`fill-lock-platforms: added ${added} optional platform entries`);
