"""LightningDataModules over compressed video, and the embedded demo dataset."""
