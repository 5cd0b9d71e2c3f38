"""The Gradio view over driftin.demo (needs gradio; the demo package itself never imports it). driftin/app.py is
its entry point (command line). One concept per module, each importing only the ones above it:

  sessions    per-browser-session state, request checks, `rejected` (one log line, one clear message)
              and `rejecting` (a ValueError in a block becomes `rejected`)
  streams     the streaming handlers: live, latent walk, control changes, Stop
  endpoints   the one-shot named API: /drift_frame, /ddim, /record_gif
  page        the page: layout, components, CSS / browser-FPS script, event wiring
  demo_app    DemoApp: the models (loading, status) joined with the handlers and the page
"""
