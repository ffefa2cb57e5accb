"""The model as the rest of the pipeline sees it: compressible layers by name, costs, tracing,
sampled activations, module swaps and hashes."""
