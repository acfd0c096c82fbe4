"""The model and its maths: the readable network (network.py), the same maths faster (kernels.py),
the dialogue graph, the losses with their checks, class similarity and class weights, mixed
precision, long dialogues in bounded memory, and the evaluation metrics."""
