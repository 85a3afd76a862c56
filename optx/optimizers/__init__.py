"""One module per ``torch.optim`` optimizer, each with its whole algorithm in its docstring."""
