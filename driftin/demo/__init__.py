"""The live demo behind the Gradio view (driftin/demo/view/, run by driftin/app.py), free of any UI code.

Drift (one forward pass) and DDPM (DDIM steps) rendered side by side from the same seeds, with the model's own
speed (GPU-synchronised wall time of the forward work only) measured apart from the rate at which frames reach
the UI; slerp latent walks; grids, side-by-side frames, GIF/MP4 clips. One concept per module, imported in this
order (each only from the ones above it):

  settings   bounds, Settings, validation of request values
  meters     RateMeter, WorkMeter, FairLock
  images     uint8 grids, side-by-side panels, GIF / MP4 writers
  walk       slerp and LatentWalk
  engine     model slots (loading, how to get missing weights) and the Engine (locked, timed model calls)
  streams    LiveFrame, the DDIM worker, live_frames and walk_frames
  recording  Recorder, clip_frame, record

view/ (the Gradio view, needs gradio) imports this package; this package never imports it.
"""
from __future__ import annotations

from .settings import (GRID_SIZES, MAX_STEPS, GUIDANCE_RANGE, DDIM_GUIDANCE, DDIM_GUIDANCE_INTERVAL, MAX_SEED,
                       RECORD_MIN_SECONDS, RECORD_MAX_SECONDS, RECORD_HARD_LIMIT, RECORD_MAX_FRAMES, RECORD_MAX_FPS, WALK_FRAMES_RANGE,
                       UNCONDITIONAL, MIXED, CLASS_CHOICES, VIEWS, TILE_SCALE, PAD, Settings, guided_at, parse_class, validate,
                       validate_record, validate_walk)
from .meters import RateMeter, WorkMeter, sync, FairLock
from .images import (to_uint8, grid_side, make_grid, side_by_side, gif_scale, same_size, write_gif, mp4_available,
                     write_mp4)
from .walk import slerp, LatentWalk
from .engine import Stopped, Slot, how_to_get, load_slot, Engine, tile_labels
from .streams import frame_seeds, seed_label, LiveFrame, DDIMWorker, live_frames, walk_frames
from .recording import Recorder, clip_frame, record

__all__ = ['GRID_SIZES', 'MAX_STEPS', 'GUIDANCE_RANGE', 'DDIM_GUIDANCE', 'DDIM_GUIDANCE_INTERVAL', 'MAX_SEED', 'RECORD_MIN_SECONDS',
           'RECORD_MAX_SECONDS', 'RECORD_HARD_LIMIT', 'RECORD_MAX_FRAMES', 'RECORD_MAX_FPS', 'WALK_FRAMES_RANGE',
           'UNCONDITIONAL', 'MIXED', 'CLASS_CHOICES', 'VIEWS', 'TILE_SCALE', 'PAD', 'Settings', 'guided_at', 'parse_class',
           'validate', 'validate_record', 'validate_walk', 'RateMeter', 'WorkMeter', 'sync', 'FairLock', 'to_uint8',
           'grid_side', 'make_grid', 'side_by_side', 'gif_scale', 'same_size', 'write_gif', 'mp4_available',
           'write_mp4', 'slerp', 'LatentWalk', 'Stopped', 'Slot', 'how_to_get', 'load_slot', 'Engine', 'tile_labels',
           'frame_seeds', 'seed_label', 'LiveFrame', 'DDIMWorker', 'live_frames', 'walk_frames', 'Recorder',
           'clip_frame', 'record']
