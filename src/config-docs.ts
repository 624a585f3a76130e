// The configuration reference, printed from the settings table (`ollama-registry config docs`);
// the README's tables are this output, and a test keeps them equal.
import { SETTINGS } from './config-schema.js';
import type { Setting } from './config-values.js';
import { UPSTREAM_FIELDS } from './upstream/config.js';

function defaultText(s: Setting): string {
  if (s.defaultDoc !== undefined) return s.defaultDoc;
  const d = s.default;
  if (Array.isArray(d)) return d.length ? `\`[${d.join(', ')}]\`` : 'none';
  return `\`${String(d)}\``;
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|');
}

/** The main table: every setting but the limits, which have their own. */
export function settingsTable(): string {
  const rows = SETTINGS.filter((s) => !s.key.startsWith('limits.')).map((s) => {
    const env = s.env ? `\`${s.env}\`` : '(file only)';
    return `| \`${s.key}\` | ${env} | ${s.flag ?? ''} | ${cell(defaultText(s))} | ${cell(s.doc)} |`;
  });
  return [
    '| setting | env | flag | default | what |',
    '|---|---|---|---|---|',
    ...rows,
    '| `limits.*` | (file only) | | | see [Limits](#limits-safe-to-expose) |',
  ].join('\n');
}

export function limitsTable(): string {
  const rows = SETTINGS.filter((s) => s.key.startsWith('limits.')).map((s) => `| \`${s.key}\` | ${cell(defaultText(s))} | ${cell(s.doc)} |`);
  return ['| setting | default | what happens past it |', '|---|---|---|', ...rows].join('\n');
}

/** The fields of one entry of `upstreams:`. */
export function upstreamsTable(): string {
  const rows = UPSTREAM_FIELDS.map((f) => `| \`${f.field}\` | ${cell(f.defaultDoc ?? `\`${f.default}\``)} | ${cell(f.doc)} |`);
  return ['| `upstreams[]` field | default | what |', '|---|---|---|', ...rows].join('\n');
}

/** Every table, as `config docs` prints them. */
export function configReference(): string {
  return `${settingsTable()}\n\n${upstreamsTable()}\n\n${limitsTable()}\n`;
}
