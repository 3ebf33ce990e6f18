"""The style recipes, one module per family: each `write(ctx)` function arranges one genre's
parts into a `Ctx` (model/corpus/arrangement.py); model/corpus/styles.py registers them."""
