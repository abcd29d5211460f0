"""How well the models read: MNIST, drawings rendered like the canvas, writers' conventions, letters
and scribbles they must refuse (sections 1-3), and the data checks beside them."""
