"""Our own IMAP server: sans-IO core, command semantics, asyncio shell."""
