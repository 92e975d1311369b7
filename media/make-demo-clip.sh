#!/bin/sh
# Rebuilds media/demo-clip.m2t, the clip `sluice demo` (npm start) streams:
# 10 s of ffmpeg's testsrc2 pattern (320x240, 25 fps, H.264 baseline at
# ~500 kbit/s, a keyframe every second) with a 440 Hz tone (AAC-LC, 48 kHz
# mono, 64 kbit/s), in MPEG-TS multiplexed at a constant 700 kbit/s (null
# packets fill the rest; PCR on the video PID every 20 ms, PAT/PMT every
# 100 ms), so the clip passes every TR 101 290 check Sluice makes: about
# 880 kB. (ffmpeg's default VBR mux spaced PCRs up to 80 ms apart: a
# pcrRepetitionError, 2.3a, at every monitor.) One thread and bitexact flags, so that the
# same ffmpeg build makes the same bytes. Needs ffmpeg (Debian package ffmpeg).
#
#   sh media/make-demo-clip.sh            # writes media/demo-clip.m2t
set -eu
cd "$(dirname "$0")"
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=320x240:rate=25:duration=10" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=10" \
  -threads 1 -fflags +bitexact -flags:v +bitexact -flags:a +bitexact \
  -c:v libx264 -preset veryfast -profile:v baseline -pix_fmt yuv420p \
  -b:v 500k -maxrate 500k -bufsize 500k -g 25 -keyint_min 25 -sc_threshold 0 \
  -c:a aac -b:a 64k -ac 1 \
  -f mpegts -muxrate 700000 -pcr_period 20 -mpegts_service_id 1 -metadata service_name="Sluice demo" \
  demo-clip.m2t
