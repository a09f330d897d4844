namespace Integrations.Api.AdminConsole;

/// <summary>The console's own small stylesheet, inlined in every page (no asset pipeline, nothing to fetch).</summary>
internal static class ConsoleStyle
{
    // Colours keep at least 4.5:1 contrast against their backgrounds (WCAG AA for text).
    public const string Css = """
        :root { --ink: #1b1f24; --muted: #4a5360; --line: #d0d7de; --bg: #f6f8fa; --accent: #0b57d0; --bad: #a40e26; --good: #116329; --warn: #7a4d00; }
        * { box-sizing: border-box; }
        body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); background: #fff; }
        a { color: var(--accent); }
        a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible, main:focus-visible { outline: 3px solid #ffbf47; outline-offset: 2px; }
        .skip { position: absolute; left: -999px; }
        .skip:focus { left: 8px; top: 8px; background: #fff; padding: 4px 8px; z-index: 1; }
        header { display: flex; flex-wrap: wrap; gap: 16px; align-items: center; padding: 10px 24px; background: #24292f; color: #fff; }
        header a { color: #fff; text-decoration: none; padding: 4px 8px; border-radius: 4px; }
        header a[aria-current="page"] { background: #57606a; }
        header nav { display: flex; flex-wrap: wrap; gap: 4px; order: 3; flex-basis: 100%; }
        header .who { margin-left: auto; }
        header nav a { white-space: nowrap; }
        .brand { font-weight: 600; }
        .who { display: flex; gap: 12px; align-items: center; font-size: 13px; }
        .who .scopes { color: #d0d7de; }
        main { padding: 16px 24px 48px; max-width: 1200px; }
        h1 { font-size: 24px; margin: 8px 0 16px; }
        h2 { font-size: 18px; margin-top: 24px; }
        table { border-collapse: collapse; width: 100%; margin: 12px 0; }
        caption { text-align: left; color: var(--muted); padding-bottom: 4px; }
        th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
        th { background: var(--bg); font-weight: 600; }
        td form { display: inline; }
        .actions { white-space: nowrap; }
        button { font: inherit; padding: 5px 12px; border-radius: 6px; border: 1px solid var(--accent); background: var(--accent); color: #fff; cursor: pointer; }
        button.secondary { background: #fff; color: var(--accent); }
        textarea { font: 13px ui-monospace, "SFMono-Regular", Menlo, monospace; padding: 5px 8px; border: 1px solid #8c959f; border-radius: 6px; }
        pre.details { margin: 0; font-size: 12px; white-space: pre-wrap; }
        .filters { flex-wrap: wrap; }
        input, select { font: inherit; padding: 5px 8px; border: 1px solid #8c959f; border-radius: 6px; }
        label { font-weight: 600; }
        .card { border: 1px solid var(--line); border-radius: 8px; padding: 16px; background: #fff; }
        .narrow { max-width: 520px; display: grid; gap: 8px; }
        .narrow fieldset { display: grid; gap: 8px; border: none; padding: 0; margin: 0; min-width: 0; }
        .narrow fieldset legend { padding: 0; margin-bottom: 4px; }
        .narrow fieldset label { font-weight: normal; }
        .narrow > label, .narrow fieldset > label { font-weight: 600; }
        .help { color: var(--muted); font-size: 13px; }
        .tiles { list-style: none; padding: 0; display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 12px; }
        .tiles a { text-decoration: none; color: inherit; display: block; }
        .tiles .number { display: block; font-size: 32px; font-weight: 600; }
        .tiles .alert { border-color: var(--bad); }
        .problem { border: 1px solid var(--bad); background: #fff5f5; color: var(--bad); border-radius: 8px; padding: 10px 14px; margin: 12px 0; }
        .problem p { margin: 4px 0; color: var(--ink); }
        .problem .code { color: var(--muted); font-size: 13px; }
        .ok { border: 1px solid var(--good); background: #f0fff4; color: var(--good); border-radius: 8px; padding: 10px 14px; margin: 12px 0; }
        .ok p { color: var(--ink); margin: 4px 0; }
        .empty { color: var(--muted); background: var(--bg); border-radius: 8px; padding: 12px 16px; }
        .inline { display: flex; gap: 8px; align-items: center; margin: 8px 0; }
        .facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; }
        .facts dt { font-weight: 600; }
        .facts dd { margin: 0; }
        .status, .risk { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 13px; border: 1px solid currentColor; }
        .status.active, .status.allowed, .status.resolved, .status.completed, .status.enabled, .status.healthy, .risk.low { color: var(--good); }
        .status.drifted, .status.acknowledged, .status.pending, .status.tool_error, .status.degraded, .status.created, .risk.medium { color: var(--warn); }
        .status.error, .status.open, .status.disabled, .status.removed, .status.failed, .status.timeout, .status.denied, .status.failing, .status.unreachable, .risk.high, .risk.critical { color: var(--bad); }
        .pager { display: flex; gap: 16px; }
        pre.definition, pre.result { background: var(--bg); border: 1px solid var(--line); border-radius: 8px; padding: 12px; overflow-x: auto; }
        table.diff { table-layout: fixed; }
        table.diff td, table.diff th { padding: 1px 8px; border-bottom: none; white-space: pre-wrap; word-break: break-all; }
        table.diff th:nth-child(odd), table.diff td.n { width: 3.5em; color: var(--muted); text-align: right; }
        table.diff td.del { background: #ffebe9; }
        table.diff td.ins { background: #dafbe1; }
        .review { margin-left: 8px; font-size: 13px; }
        .chart { margin: 16px 0; max-width: 760px; }
        .chart figcaption { font-weight: 600; margin-bottom: 4px; }
        .chart .bar { fill: var(--accent); }
        .chart .grid { stroke: var(--line); stroke-width: 1; }
        .chart .axis { fill: var(--muted); font-size: 11px; }
        .timeline .call.completed .bar { fill: var(--good); }
        .timeline .call.tool_error .bar { fill: var(--warn); }
        .timeline .call.failed .bar, .timeline .call.timeout .bar, .timeline .call.denied .bar { fill: var(--bad); }
        table.result td { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: 13px; }
        code { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: 13px; }
        """;
}
