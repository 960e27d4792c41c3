// The elements of the reading screen (templates/reading/read.html), looked up once.
export const byId = (id) => document.getElementById(id);

export const app = byId("read-app");
export const form = byId("report-form");
export const findingsBox = byId("findings");
export const impressionBox = byId("impression");
export const flagsBox = byId("finding-flags");
export const reasonBox = byId("correction-reason");
export const correctionBlock = byId("correction");
export const sourceLabel = byId("text-source");
export const saveStatus = byId("save-status");
export const actionError = byId("action-error");
export const submitButton = byId("submit-button");
export const correctButton = byId("correct-button");
export const correctionSubmit = byId("correction-submit");
export const correctionCancel = byId("correction-cancel");
export const nextButton = byId("next-button");
export const banner = byId("report-banner");
export const conflictBox = byId("conflict");
export const loadError = byId("load-error");
export const modalEl = byId("confirm-modal");
export const confirmButton = byId("confirm-button");
export const confirmError = byId("confirm-error");
