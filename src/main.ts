#!/usr/bin/env node
// ollama-registry command line: one sub-command per file under cli/.
import { Command, CommanderError } from 'commander';
import { registerImport } from './cli/import.js';
import { registerKeys } from './cli/keys.js';
import { registerUsers } from './cli/users.js';
import { registerPull } from './cli/pull.js';
import { EXIT } from './cli/common.js';
import { registerServe } from './cli/serve.js';
import { registerExport } from './cli/export.js';
import { registerGc } from './cli/gc.js';
import { registerLs } from './cli/ls.js';
import { registerPin } from './cli/pin.js';
import { registerRm } from './cli/rm.js';
import { registerVerify } from './cli/verify.js';
import { registerCa } from './cli/ca.js';
import { registerClientSetup } from './cli/client-setup.js';
import { registerDoctor } from './cli/doctor.js';
import { registerConfig } from './cli/config.js';
import { VERSION } from './version.js';

const program = new Command('ollama-registry')
  .description('A self-hosted registry for ollama models')
  .version(VERSION)
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride((err: CommanderError) => {
    const ok = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help';
    process.exit(ok ? EXIT.OK : EXIT.USAGE);
  });

registerServe(program);
registerImport(program);
registerPull(program);
registerLs(program);
registerRm(program);
registerPin(program);
registerGc(program);
registerVerify(program);
registerExport(program);
registerKeys(program);
registerUsers(program);
registerCa(program);
registerClientSetup(program);
registerDoctor(program);
registerConfig(program);

await program.parseAsync(process.argv);
