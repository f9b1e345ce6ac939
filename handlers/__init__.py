"""aiogram routers, one module per role; thin: read the update, call a use case, render."""
