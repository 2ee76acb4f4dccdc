"""nbgrader's configuration for commands and servers started in the course's root folder.

nbgrader (its command line and its JupyterLab server extensions: Validate, the formgrader) reads
nbgrader_config.py from the current working directory. The course's real configuration lives in
autograder/nbgrader_config.py; this file only loads it, so that `./course lab` (started here) finds the course.
"""

import os

c = get_config()  # noqa: F821 - provided by traitlets when it loads this file

# traitlets sets __file__ when it loads a config file; fall back to the working directory all the same.
_here = os.path.dirname(os.path.abspath(globals().get("__file__") or os.path.join(os.getcwd(), "x")))
_course_config = os.path.join(_here, "autograder", "nbgrader_config.py")

if os.path.exists(_course_config):
    load_subconfig(_course_config)  # noqa: F821 - provided by traitlets
else:  # the minimum the formgrader and Validate need, should autograder/ be missing
    c.CourseDirectory.course_id = "lrdiff"
    c.CourseDirectory.root = _here
