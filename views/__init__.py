"""Every text and keyboard a person sees, rendered in the reader's language: the handlers'
answers and the outbox's messages alike. Views read data and the rules' tables; they never
change state, and they never import handlers or bot."""
