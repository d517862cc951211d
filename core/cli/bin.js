#!/usr/bin/env node
// The CLI is TypeScript run through tsx's loader, so `npx sluice` works straight after `npm ci`
// with no build step to forget.
import { register } from 'tsx/esm/api';

register();
await import('./main.ts');
