/**
 * Every connector sluice ships, in one explicit list: adding a connector means adding it here.
 * Nothing registers itself by being imported.
 */
import { defineRegistry } from '../core/connector.ts';
import { datagen } from './datagen/index.ts';
import { file } from './file/index.ts';
import { fileTail } from './file-tail/index.ts';
import { http } from './http/index.ts';
import { mysql } from './mysql/index.ts';
import { postgres } from './postgres/index.ts';
import { postgresCdc } from './postgres-cdc/index.ts';
import { webhook } from './webhook/index.ts';

export const registry = defineRegistry([datagen, file, fileTail, http, mysql, postgres, postgresCdc, webhook]);
