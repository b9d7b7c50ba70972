/**
 * The dashboard's HTML and CSS, built into the package (no CDN, nothing fetched at run time but
 * the handler's own API). The script is `script.ts`.
 */

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>weir</title>
<link rel="stylesheet" href="dashboard.css">
<script type="module" src="dashboard.js"></script>
</head>
<body>
<header><a href="#/" class="brand">weir</a><span id="connection" class="connection">connecting</span></header>
<main id="main"></main>
</body>
</html>
`;

export const PAGE_CSS = `
:root { --fg: #1d232b; --muted: #667085; --line: #d9dee5; --bg: #f6f7f9; --card: #fff;
  --completed: #1f9d55; --running: #2b6cb0; --waiting: #b7791f; --failed: #c53030; --cancelled: #718096; --pending: #a0aec0; --skipped: #805ad5; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; align-items: center; gap: 16px; padding: 10px 20px; background: #111827; color: #fff; }
header a.brand { color: #fff; font-weight: 700; text-decoration: none; font-size: 16px; }
.connection { margin-left: auto; font-size: 12px; opacity: .8; }
main { padding: 20px; max-width: 1200px; margin: 0 auto; }
h1 { font-size: 20px; margin: 0 0 12px; }
h2 { font-size: 15px; margin: 24px 0 8px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 16px; margin-bottom: 16px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; font-size: 12px; }
.status { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px; background: var(--pending); }
.status.completed { background: var(--completed); } .status.running { background: var(--running); }
.status.waiting { background: var(--waiting); } .status.failed { background: var(--failed); }
.status.cancelled { background: var(--cancelled); } .status.skipped { background: var(--skipped); }
progress { width: 140px; height: 10px; vertical-align: middle; }
.muted { color: var(--muted); }
.filters { display: flex; gap: 10px; margin-bottom: 12px; align-items: center; }
button { font: inherit; padding: 4px 12px; border-radius: 6px; border: 1px solid var(--line); background: #fff; cursor: pointer; }
button.primary { background: var(--running); color: #fff; border-color: var(--running); }
button.danger { color: var(--failed); }
.actions { display: flex; gap: 8px; margin: 8px 0 0; }
.error { color: var(--failed); white-space: pre-wrap; }
.ok { color: var(--completed); }
.log { font: 12px/1.5 ui-monospace, monospace; max-height: 320px; overflow: auto; background: #0b1020; color: #d8dee9; padding: 10px; border-radius: 6px; }
.log div { white-space: nowrap; }
form.answer label { display: block; margin: 6px 0; }
form.answer input, form.answer select, form.answer textarea { font: inherit; padding: 4px 6px; margin-left: 6px; }
svg.graph { width: 100%; background: #fff; }
svg.graph rect { rx: 6; stroke-width: 1.5; }
svg.graph text { font: 12px system-ui, sans-serif; }
`;
