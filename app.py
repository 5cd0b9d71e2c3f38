"""driftin live demo: `python app.py [options]` is `driftin app [options]` (the entry point a Hugging Face Space
runs). The view lives in driftin/app.py, its logic in driftin/live.py; see README, section App."""
from driftin.app import main

if __name__ == "__main__":
    main()
