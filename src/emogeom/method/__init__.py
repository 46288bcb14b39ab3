"""Method-effect experiments on one model: the four-layer decomposition of a comprehension vs
generation effect (``decompose``), one generation knob at a time (``sensitivity``) and
precision drift (``drift``). Progress goes through callbacks (``emogeom.progress``)."""
