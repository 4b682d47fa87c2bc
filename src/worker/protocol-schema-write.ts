/**
 * Writes protocol/messages.schema.json from the message definitions in protocol-messages.ts.
 * Run from the repository root after changing a message:
 *
 *     node --import tsx src/worker/protocol-schema-write.ts
 *
 * protocol-schema.test.ts fails while the committed file differs from what this writes.
 */
import { writeFileSync } from 'node:fs';
import { MESSAGES_SCHEMA_FILE, messagesSchemaText } from './protocol-messages.js';

writeFileSync(MESSAGES_SCHEMA_FILE, messagesSchemaText());
console.log(`wrote ${MESSAGES_SCHEMA_FILE}`);
