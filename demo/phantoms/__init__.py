"""Synthetic chest radiographs with known findings, as DICOM, for the demo model and the tests; no Django.

A phantom is a cartoon of a PA chest film: dark lungs with vessel markings, mediastinum, spine,
trachea, heart, ribs, clavicles, diaphragm and a gastric bubble, with any of the six critical
findings drawn in where a radiologist would look for them.  Each phantom comes with its true
labels, a templated report (FINDINGS / IMPRESSION) that says exactly those findings, a short
clinical history, the stored pixels, a DICOM file that the product's ingest accepts, and the 8-bit
display PNG made by the product's own renderer (trial.dicom.render_display).

Everything is a function of the seed: the anatomy, the noise and the wording each draw from their
own random stream, and each finding from one more, so the same seed with and without a finding
gives the same patient with and without it (the tests compare the two images).

Not a patient image, and not for clinical use: the DICOM header says so in Image Comments.
"""

from .findings import FINDINGS, FindingDetail
from .generator import Phantom, make_dataset, make_phantom, random_findings
from .report import Report

__all__ = [
    "FINDINGS",
    "FindingDetail",
    "Phantom",
    "Report",
    "make_dataset",
    "make_phantom",
    "random_findings",
]
