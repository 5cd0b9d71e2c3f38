"""driftin live demo: `python app.py [options]` is `driftin app [options]` (the entry point a Hugging Face Space
runs). Its command line is driftin/app.py, the view driftin/demo/view/, its logic driftin/demo/; see README,
section App."""
from driftin.app import main

if __name__ == "__main__":
    main()
