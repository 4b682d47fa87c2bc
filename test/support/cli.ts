/**
 * Runs `klein …` commands in-process through commander, against a temporary database, and
 * returns what they printed (the CLI's unit tests).
 */
import { Command } from 'commander';
import type { CliContext } from '../../src/cli/db-cli.js';
import type { TempDb } from './temp-db.js';

type Register = (program: Command, ctx: CliContext, io: { out: (s: string) => void }) => void;

export async function runKlein(t: TempDb, commands: readonly Register[], args: readonly string[]): Promise<string> {
  let out = '';
  const io = { out: (s: string) => void (out += s) };
  const program = new Command('klein').exitOverride().configureOutput({ writeOut: () => {}, writeErr: () => {} });
  const ctx = { dataDir: () => t.dataDir, databaseUrl: () => t.url };
  for (const register of commands) register(program, ctx, io);
  await program.parseAsync([...args], { from: 'user' });
  return out;
}
