"""Sending webhooks: destination checks, signing, one attempt, retry timing and the arq chain."""
