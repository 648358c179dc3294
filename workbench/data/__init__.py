"""Data: LAION/MMC4 webdataset pipelines, the MMC4 filter, mixtures and the shapes world."""
