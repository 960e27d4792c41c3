"""Retrospective evaluation of the AI drafts against the final reports, for analysts once a trial is unblinded."""
