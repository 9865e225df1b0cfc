"""Click-to-segment: the region of the model's class under a click (``point``), and SAM's
object under a click (``sam_click``, with ``sam_masks`` for SAM's automatic masks)."""
