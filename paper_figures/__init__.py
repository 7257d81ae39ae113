"""One script per figure; each writes paper_figures/out/NAME.png, NAME.pdf and NAME.csv."""
