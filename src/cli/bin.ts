#!/usr/bin/env node
/** The `weir` command's entry. */
import { main } from './main.js';

process.exitCode = await main(process.argv.slice(2));
