import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { dirname, join, normalize, resolve } from 'node:path';
import { promisify } from 'node:util';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const exec = promisify(execFile);
const root = resolve(import.meta.dirname, '../..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  files: string[];
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  peerDependencies: Record<string, string>;
};

/** The files `npm pack` would put in the tarball, relative to the package root. */
async function packedFiles(): Promise<string[]> {
  const { stdout } = await exec('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, timeout: 60_000 });
  const [report] = JSON.parse(stdout) as [{ files: { path: string }[] }];
  return report.files.map((f) => f.path);
}

/** The relative link targets of a markdown file (external links and in-page anchors left out). */
function relativeLinks(markdown: string): string[] {
  const targets = [...markdown.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!);
  return targets.filter((t) => !/^[a-z][a-z0-9+.-]*:/i.test(t) && !t.startsWith('#')).map((t) => t.split('#')[0]!);
}

/** The package names that the modules under `dir` import (Node built-ins left out). */
function importedPackages(dir: string): Set<string> {
  const names = new Set<string>();
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.ts')) continue;
    const source = readFileSync(join(entry.parentPath, entry.name), 'utf8');
    for (const { fileName } of ts.preProcessFile(source, true, true).importedFiles) {
      if (fileName.startsWith('.') || isBuiltin(fileName)) continue;
      const parts = fileName.split('/');
      names.add(fileName.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!);
    }
  }
  return names;
}

describe('the published package', () => {
  it('ships the license and every file the README and the shipped docs link to', async () => {
    const files = await packedFiles();
    expect(files).toContain('LICENSE');
    expect(files).toContain('README.md');
    const markdown = files.filter((f) => f.endsWith('.md'));
    expect(markdown).toContain('docs/getting-started.md');
    const missing: string[] = [];
    for (const file of markdown) {
      for (const target of relativeLinks(readFileSync(join(root, file), 'utf8'))) {
        const path = normalize(join(dirname(file), target)).replaceAll('\\', '/');
        if (!files.includes(path)) missing.push(`${file} -> ${target}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('depends at run time on exactly the packages its sources import', () => {
    const imported = importedPackages(join(root, 'src'));
    // An optional peer (OpenTelemetry's API) is imported only by the subpath that needs it.
    expect([...imported].filter((name) => !(name in pkg.dependencies) && !(name in pkg.peerDependencies))).toEqual([]);
    expect(Object.keys(pkg.dependencies).filter((name) => !imported.has(name))).toEqual([]);
  });

  it('keeps @keyv/sqlite, which only the tests use, out of the run-time dependencies', () => {
    expect(pkg.dependencies).not.toHaveProperty('@keyv/sqlite');
    expect(pkg.devDependencies).toHaveProperty('@keyv/sqlite');
  });
});
