// Allow/deny rules by repository name, for pull, pull-through and push. Rules live in the config
// file under `policy:` and are re-read when the file changes, without a restart:
//
//   policy:
//     - name: no-private          # optional; errors name the rule by this or by its number
//       deny: [pull, push]        # or allow: ...; one action or a list; "all" = every action
//       names: ["private/*"]      # namespace/model globs, case-insensitive; * stays within a part
//
// For an action on a name, the first rule that lists the action and matches the name decides;
// when none does, the action is allowed.
import { statSync, unwatchFile, watchFile } from 'node:fs';
import picomatch from 'picomatch';
import { ConfigError, readConfigFile } from '../config-file.js';
import { RegistryError } from '../errors.js';
import type { Logger } from '../log.js';

export const ACTIONS = ['pull', 'pull-through', 'push'] as const;
export type Action = (typeof ACTIONS)[number];

export interface PolicyRule {
  /** How errors and logs name the rule. */
  label: string;
  effect: 'allow' | 'deny';
  actions: Action[];
  names: string[];
}

export class PolicyConfigError extends Error {
  constructor(readonly key: string, message: string) {
    super(message);
  }
}

function list(v: unknown, key: string, what: string): string[] {
  const arr = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(arr) || arr.length === 0 || arr.some((x) => typeof x !== 'string' || x === '')) {
    throw new PolicyConfigError(key, `expected ${what} (a string or a list of strings)`);
  }
  return arr as string[];
}

/** Check and normalise the `policy:` setting (a list of rules); errors name the rule's key. */
export function parsePolicy(raw: unknown, key = 'policy'): PolicyRule[] {
  if (raw === null || raw === undefined) return [];
  if (!Array.isArray(raw)) throw new PolicyConfigError(key, 'expected a list of rules like {deny: push, names: "library/*"}');
  return raw.map((r, i) => {
    const k = `${key}[${i}]`;
    if (!r || typeof r !== 'object' || Array.isArray(r)) throw new PolicyConfigError(k, 'expected a rule like {deny: push, names: "library/*"}');
    const o = r as Record<string, unknown>;
    for (const f of Object.keys(o)) {
      if (!['name', 'allow', 'deny', 'names'].includes(f)) throw new PolicyConfigError(`${k}.${f}`, 'unknown rule field (expected name, allow or deny, names)');
    }
    if ((o.allow === undefined) === (o.deny === undefined)) throw new PolicyConfigError(k, 'give exactly one of allow: or deny:');
    const effect = o.allow !== undefined ? 'allow' : 'deny';
    const actions = new Set<Action>();
    for (const a of list(o[effect], `${k}.${effect}`, `actions: ${ACTIONS.join(', ')} or all`)) {
      if (a === 'all' || a === '*') ACTIONS.forEach((x) => actions.add(x));
      else if ((ACTIONS as readonly string[]).includes(a)) actions.add(a as Action);
      else throw new PolicyConfigError(`${k}.${effect}`, `unknown action ${JSON.stringify(a)} (expected ${ACTIONS.join(', ')} or all)`);
    }
    const names = list(o.names, `${k}.names`, 'namespace/model globs such as "library/*"');
    for (const n of names) {
      if (n !== '*' && n !== '**' && n.split('/').length !== 2) {
        throw new PolicyConfigError(`${k}.names`, `${JSON.stringify(n)} is not a namespace/model glob (e.g. "team/*", "library/gemma*", or "*" for every name)`);
      }
    }
    if (o.name !== undefined && (typeof o.name !== 'string' || o.name === '')) throw new PolicyConfigError(`${k}.name`, 'expected a non-empty string');
    const label = typeof o.name === 'string' ? `"${o.name}"` : `#${i + 1}`;
    return { label, effect, actions: [...actions], names };
  });
}

interface Compiled extends PolicyRule {
  match: (name: string) => boolean;
}

function compile(rules: PolicyRule[]): Compiled[] {
  return rules.map((r) => {
    // '*' and '**' alone mean every name; otherwise a glob over "namespace/model".
    const globs = r.names.map((n) => (n === '*' || n === '**' ? '*/*' : n));
    return { ...r, match: picomatch(globs, { nocase: true, dot: true }) };
  });
}

export interface Decision {
  allowed: boolean;
  rule?: PolicyRule;
}

export class Policy {
  private compiled: Compiled[];
  private lastError: string | null = null;
  private fileStamp = '';
  private readonly onChange = () => { this.reload(); };

  /**
   * `file` is the config file the rules came from: it is watched (a stat every `intervalMs`)
   * and its `policy:` re-read when it changes. A broken edit is logged and the rules in force stay.
   */
  constructor(rules: PolicyRule[], private readonly opts: { file?: string; log?: Logger; intervalMs?: number; onRefuse?: (action: Action) => void } = {}) {
    this.compiled = compile(rules);
    if (opts.file) {
      this.fileStamp = stamp(opts.file);
      watchFile(opts.file, { persistent: false, interval: opts.intervalMs ?? 1000 }, this.onChange);
    }
  }

  get rules(): PolicyRule[] {
    return this.compiled.map(({ match: _m, ...r }) => r);
  }

  /** Null when the rules in force are what the file says; else why the last reload failed. */
  get reloadError(): string | null {
    return this.lastError;
  }

  /** Re-read the rules from the config file now (a no-op when it has not changed). */
  reload(): boolean {
    const file = this.opts.file;
    if (!file) return false;
    const now = stamp(file);
    if (now === this.fileStamp) return false;
    this.fileStamp = now;
    try {
      const doc = readConfigFile(file) as Record<string, unknown>;
      const rules = parsePolicy(doc.policy);
      this.compiled = compile(rules);
      this.lastError = null;
      this.opts.log?.info({ file, rules: rules.length }, 'policy reloaded');
      return true;
    } catch (e) {
      const key = e instanceof PolicyConfigError ? `${e.key}: ` : '';
      // A ConfigError (the file itself) already names the file.
      this.lastError = e instanceof ConfigError ? e.message.slice('config: '.length) : `${file}: ${key}${(e as Error).message.split('\n')[0]}`;
      this.opts.log?.error({ file, err: this.lastError }, 'policy not reloaded: keeping the rules in force');
      return false;
    }
  }

  close(): void {
    if (this.opts.file) unwatchFile(this.opts.file, this.onChange);
  }

  decide(action: Action, namespace: string, model: string): Decision {
    const name = `${namespace}/${model}`;
    for (const r of this.compiled) {
      if (r.actions.includes(action) && r.match(name)) return { allowed: r.effect === 'allow', rule: r };
    }
    return { allowed: true };
  }

  /** Throws DENIED (403) naming the rule when the action is refused. */
  check(action: Action, namespace: string, model: string): void {
    const d = this.decide(action, namespace, model);
    if (d.allowed) return;
    this.opts.onRefuse?.(action);
    const r = d.rule!;
    throw new RegistryError('DENIED', `${action} of ${namespace}/${model} is refused by policy rule ${r.label} (deny ${r.actions.join(', ')} ${r.names.join(', ')})`);
  }
}

function stamp(file: string): string {
  try {
    const s = statSync(file);
    return `${s.mtimeMs}:${s.size}:${s.ino}`;
  } catch {
    return 'missing';
  }
}
