import numpy as np

from engine.analysis.cells import cell_blocks


def test_cells_cut_row_by_row_and_pad_the_ragged_edge():
    data = np.arange(15, dtype=np.int64).reshape(3, 5)
    blocks = cell_blocks(data, 2, -1)
    assert blocks.shape == (2, 3, 4)
    assert blocks[0, 0].tolist() == [0, 1, 5, 6]
    assert blocks[0, 2].tolist() == [4, -1, 9, -1]        # the last column, padded
    assert blocks[1, 1].tolist() == [12, 13, -1, -1]      # the last row, padded
