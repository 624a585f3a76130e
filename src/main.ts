#!/usr/bin/env -S node --max-semi-space-size=8 --initial-old-space-size=48
// ollama-registry command line: one sub-command per file under cli/.
// The flags (which only a process's start can set): a young generation of 2 x 8 MiB instead of 2 x 16 MiB
// takes ~15 MiB off serve's peak RSS under load at the same CPU per request (npm run bench -- core). An old
// generation allowed 48 MiB before full collections: with V8's default (~30 MiB for serve's ~14 MiB heap) the
// socket buffers of a fill (64 KiB per read, dead at once but counted until a GC) started ~50 full collections
// per GiB, 1.2-1.5 s of GC threads; 48 leaves ~12 (64: 2, but +14 MiB peak RSS under manifest load; 48: +6).
// Start with `node --max-semi-space-size=8 --initial-old-space-size=48 dist/src/main.js` where not through this file (systemd units).
import { Command, CommanderError } from 'commander';
import { EXIT } from './cli/common.js';
import { VERSION } from './version.js';

type Register = (program: Command) => void;

// Each command's module is loaded only when it runs: `serve` then never loads the export/import
// tar code, the progress bars or the CA's x509 library, which would stay in its heap for good.
const COMMANDS: Array<[string[], () => Promise<Register>]> = [
  [['serve'], async () => (await import('./cli/serve.js')).registerServe],
  [['import'], async () => (await import('./cli/import.js')).registerImport],
  [['pull'], async () => (await import('./cli/pull.js')).registerPull],
  [['ls', 'list'], async () => (await import('./cli/ls.js')).registerLs],
  [['rm'], async () => (await import('./cli/rm.js')).registerRm],
  [['pin', 'unpin'], async () => (await import('./cli/pin.js')).registerPin],
  [['gc'], async () => (await import('./cli/gc.js')).registerGc],
  [['verify'], async () => (await import('./cli/verify.js')).registerVerify],
  [['export'], async () => (await import('./cli/export.js')).registerExport],
  [['keys'], async () => (await import('./cli/keys.js')).registerKeys],
  [['users'], async () => (await import('./cli/users.js')).registerUsers],
  [['ca'], async () => (await import('./cli/ca.js')).registerCa],
  [['client-setup'], async () => (await import('./cli/client-setup.js')).registerClientSetup],
  [['doctor'], async () => (await import('./cli/doctor.js')).registerDoctor],
  [['config'], async () => (await import('./cli/config.js')).registerConfig],
];

const program = new Command('ollama-registry')
  .description('A self-hosted registry for ollama models')
  .version(VERSION)
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride((err: CommanderError) => {
    const ok = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help';
    process.exit(ok ? EXIT.OK : EXIT.USAGE);
  });

// A known command name first: load that one only. Anything else (help, --version, a typo): all of them,
// so that the help lists every command and a typo gets its suggestion.
const named = COMMANDS.find(([names]) => names.includes(process.argv[2] ?? ''));
for (const [, load] of named ? [named] : COMMANDS) (await load())(program);

await program.parseAsync(process.argv);
