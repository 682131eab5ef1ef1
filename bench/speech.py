"""Synthesised speech and noise: the input of the wake-word benchmark and of end-to-end tests.

A wake word cannot be tested with the bundled sample (it does not say it), and recordings of
people saying it would have to be shipped and licensed. espeak-ng says it well enough for the
`okay_nabu` model in the voices measured in docs/wake-word.md, and its output is deterministic, so
a test built on it fails for a reason, not by chance. Everything here is 16 kHz mono int16 (the
microphone's wire rate, what the detector hears) and seeded: the same arguments give the same
samples on every run.

- `synth()`: one utterance from espeak-ng, cached in-process by its arguments;
- `VOICES` / `SPEEDS` / `PITCHES`: where `okay nabu` is reliably detected (144/144 clean);
  `TALKER_VOICES`: a wider set for speech that must *not* wake it, female voices included;
- `WAKE_PHRASE`, `QUESTIONS`: "okay nabu, <question>" (the comma's pause matters: the question
  said straight on after the phrase costs a third of detections);
- `SENTENCES`: ordinary speech without the wake word; `NEAR_MISSES`: phrases that sound like it,
  kept apart because they are the detector's known weak spot, not ordinary speech;
- `white_noise`, `pink_noise`, `babble`, `mix_at_snr`, `speech_bounds`, `ordinary_speech`.
"""

from __future__ import annotations

import functools
import shutil
import struct
import subprocess

import numpy as np

RATE = 16_000
ESPEAK = "espeak-ng"
NOISE_RMS = 3277.0  # every noise generator's level: -20 dBFS RMS, far from clipping

# Detected 144/144 clean in docs/wake-word.md (peak ≥ 0.97) at these speeds and pitches; female
# variants and slow speech (-s 130) are not, so a wake test in them would measure espeak-ng.
VOICES = ("en", "en-us", "en+m3", "en-029", "en-gb-x-rp", "en-us+m1")
SPEEDS = (160, 175, 190)
PITCHES = (30, 40, 50, 60, 70)

# Speech that must not wake the box: the reliable voices and others, female ones included, at a
# wider range of speeds (docs/wake-word.md measured its false activations in these twelve).
TALKER_VOICES = (
    *VOICES,
    "en-gb-scotland",
    "en-us-nyc",
    "en-us+klatt",
    "en-us+f3",
    "en+f3",
    "en+f2",
)
TALKER_SPEEDS = (140, 160, 175, 190)
TALKER_PITCHES = (35, 50, 65)

WAKE_PHRASE = "okay nabu"

QUESTIONS = (
    "what is the weather like tomorrow",
    "set a timer for ten minutes",
    "what time is it in Tokyo",
    "how far away is the moon",
    "turn the volume down a little",
    "tell me a joke about penguins",
    "what should I cook for dinner tonight",
    "how many days are left until the weekend",
    "remind me to water the plants",
    "what is the capital of Australia",
    "how do you spell necessary",
    "play something relaxing",
    "is it going to rain this afternoon",
    "what can you see on the table",
    "how long do I boil an egg",
    "who wrote the first dictionary",
    "convert twenty miles to kilometres",
    "what does the word serendipity mean",
    "when does the sun set today",
    "give me a word that rhymes with orange",
)

# Ordinary speech: household talk, requests, narration and news-like prose, written for this
# benchmark. None says "okay" or anything close to the wake phrase (that is `NEAR_MISSES`).
SENTENCES = (
    "The meeting has been moved to Thursday afternoon because the manager is travelling.",
    "Please remember to buy milk and bread on your way home tonight.",
    "I think we should paint the kitchen a lighter colour before the winter.",
    "Trains to the city centre leave every fifteen minutes from the second platform.",
    "She read the whole book in one evening and then started it again.",
    "The children built a small castle out of cardboard boxes in the garden.",
    "Could you pass me the salt and the pepper, please?",
    "We are expecting heavy rain across the north of the country this weekend.",
    "My brother moved to a flat near the river last spring.",
    "The museum opens at ten in the morning and closes at six.",
    "If the printer jams again, switch it off and wait a minute.",
    "There is a new bakery on the corner that sells rye bread.",
    "He forgot his umbrella on the bus and got soaked on the way to work.",
    "Turn left at the traffic lights and the library is on your right.",
    "The soup needs more garlic and a little less salt.",
    "Our neighbours have a dog that barks whenever the postman comes.",
    "The football match was cancelled because the pitch was flooded.",
    "I have been learning to play the piano for almost two years.",
    "The price of coffee has gone up again this month.",
    "Let me know when you have finished with the laptop.",
    "The plane landed twenty minutes early thanks to a strong tail wind.",
    "A small fire in the warehouse was put out before anyone was hurt.",
    "We watched a documentary about whales in the Pacific Ocean.",
    "The heating comes on at six and goes off at half past ten.",
    "Scientists have found a new species of frog in the rainforest.",
    "Put the plates in the dishwasher and the glasses in the sink.",
    "The train was delayed by a signal failure outside the station.",
    "I would like a table for four at eight o'clock, please.",
    "The old bridge will be closed for repairs until the end of March.",
    "Grandmother always made apple pie on Sunday afternoons.",
    "The council has promised to fix the potholes on our street.",
    "Wind turbines now produce a large share of the region's electricity.",
    "He spent the whole afternoon trying to fix the bicycle chain.",
    "The concert starts at half past seven, so we should leave by six.",
    "Do not forget to lock the back door before you go to bed.",
    "The hotel room had a view over the harbour and the lighthouse.",
    "Most of the snow melted during the night.",
    "The new software update fixes several problems with the battery.",
    "My sister is studying chemistry at the university in the capital.",
    "The farmer sold fresh eggs and honey at the market.",
    "We need to book the tickets before the prices go up.",
    "The cat slept on the windowsill all morning in the sun.",
    "Could you read the instructions out loud while I assemble the shelf?",
    "The shop will be closed on Monday for the bank holiday.",
    "A thick fog covered the valley until almost noon.",
    "The teacher asked everyone to hand in their essays by Friday.",
    "I prefer tea in the morning and coffee after lunch.",
    "The garden needs watering, the lawn is turning brown.",
    "Traffic on the motorway is moving slowly after an accident near the junction.",
    "The recipe calls for two eggs, a cup of flour and some butter.",
    "They walked along the beach collecting shells and pebbles.",
    "The bus to the airport leaves from outside the town hall.",
    "Our internet connection keeps dropping in the evenings.",
    "The doctor said I should drink more water and sleep longer.",
    "The orchestra played a symphony by a young composer from Finland.",
    "He keeps his tools in a wooden box in the shed.",
    "Temperatures will fall below freezing after midnight.",
    "The baby finally fell asleep after a long walk in the pram.",
    "We are out of washing powder and toothpaste.",
    "The film was much longer than I expected, but I enjoyed it.",
    "Please send me the report as soon as it is ready.",
    "The bridge across the bay is almost three kilometres long.",
    "She painted the fence blue to match the front door.",
    "The restaurant on the square serves the best pasta in town.",
    "There was a long queue at the post office this morning.",
    "My phone battery never lasts a full day any more.",
    "The mountains were covered in snow when we arrived.",
    "Remember that the clocks go back an hour this weekend.",
    "The kettle is broken, so we boiled water in a saucepan.",
    "His grandfather worked as a sailor for forty years.",
    "The exhibition shows paintings from the last three centuries.",
    "We planted tomatoes, beans and lettuce in the vegetable patch.",
    "The lift is out of order, please use the stairs.",
    "I cannot find my keys, have you seen them anywhere?",
    "The election results will be announced late tonight.",
    "A flock of geese flew over the lake towards the south.",
    "The washing machine makes a strange noise when it spins.",
    "Our flight home was the last one before the storm.",
    "The cinema has comfortable seats but the screen is small.",
    "He wrote a long letter to his friend in Canada.",
    "The river burst its banks after a week of heavy rain.",
    "Everyone in the office signed a birthday card for Maria.",
    "The path through the woods is muddy after the storm.",
    "They are building a new school next to the park.",
    "The orange juice in the fridge is past its date.",
    "I usually go swimming on Tuesday and Thursday evenings.",
    "The guide showed us around the castle and told us its history.",
    "The car needs new tyres before the long drive north.",
    "The market sells fruit, vegetables, cheese and flowers.",
    "We spent the holiday walking in the hills and reading.",
    "The sound of the rain on the roof helped me sleep.",
    "Can you help me carry these boxes up to the attic?",
    "The company plans to open three new offices next year.",
    "A strong wind blew the leaves off the trees overnight.",
    "The lecture was about the history of the printing press.",
    "Dinner will be ready in about twenty minutes.",
    "The pharmacy is next to the supermarket on the high street.",
    "My favourite season is autumn, when the leaves change colour.",
    "The boat rocked gently as we waited for the tide.",
    "Write the shopping list on the back of the envelope.",
)

# Phrases close to the wake phrase. docs/wake-word.md: "okay no" 49 %, "okay now" 47 %, "ok, now
# look" 78 % at the default cutoff — a figure to watch, not ordinary speech.
NEAR_MISSES = (
    "okay",
    "okay now",
    "okay, no",
    "okay nah",
    "okay, bye",
    "okay, nobody knows",
    "okay, a new book",
    "ok, now look",
    "okay Nabil",
    "okay Nadia",
    "oh, nah, boo",
    "okay, I'm not a fan of bamboo",
    "okay that was a taboo",
    "okay, let's go to Kabul",
    "no, I said okay",
    "the baboon ate the bamboo",
    "it's about the new kabuki show",
    "hey, about that",
)


def available() -> bool:
    """Whether espeak-ng is installed (scripts/setup installs it); tests skip without it."""
    return shutil.which(ESPEAK) is not None


def synth(text: str, voice: str = "en-us", speed: int = 175, pitch: int = 50) -> np.ndarray:
    """`text` spoken by espeak-ng (`-v voice -s speed -p pitch`), 16 kHz mono int16.

    espeak-ng writes 22050 Hz; soxr resamples it (both deterministic). The clip starts and ends
    with espeak's own short silence; `speech_bounds` finds the speech inside it. The result is
    cached by its arguments for the life of the process and is read-only: copy it to change it.
    """
    return _synth(text, voice, int(speed), int(pitch))


@functools.lru_cache(maxsize=1024)  # about an hour of clips at most
def _synth(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    import soxr

    if not available():
        raise FileNotFoundError(f"{ESPEAK} is not installed (scripts/setup installs it)")
    args = [ESPEAK, "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout"]
    # Text on stdin, never as an argument: a sentence starting with "-" is not an option.
    wav = subprocess.run(args, input=text.encode(), capture_output=True, check=True).stdout
    rate, pcm = _parse_wav(wav)
    out = soxr.resample(pcm, rate, RATE) if rate != RATE else pcm.copy()
    out = np.ascontiguousarray(out, dtype=np.int16)
    out.flags.writeable = False
    return out


def _parse_wav(data: bytes) -> tuple[int, np.ndarray]:
    """espeak-ng's `--stdout` WAV: it streams, so its sizes are placeholders (0x7fffffff); the
    samples are everything after the `data` chunk's header."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("espeak-ng did not write a WAV")
    pos, rate = 12, 0
    while pos + 8 <= len(data):
        tag, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if tag == b"fmt ":
            channels, rate, bits = struct.unpack("<xxHI6xH", data[pos + 8 : pos + 24])
            if channels != 1 or bits != 16:
                raise ValueError(f"espeak-ng wrote {channels} channels of {bits} bits")
        elif tag == b"data":
            body = data[pos + 8 :]
            return rate, np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2").astype(np.int16)
        pos += 8 + size + (size & 1)
    raise ValueError("espeak-ng's WAV has no data chunk")


def speech_bounds(pcm: np.ndarray, threshold: int = 300) -> tuple[int, int]:
    """(first, last) index of the samples whose magnitude exceeds `threshold` (300 ≈ -40 dBFS):
    where the speech of a clean synthesised clip begins and ends, to the sample, so a test knows
    the onset of a phrase placed in a longer stream. (0, 0) for a clip with no such sample.

    Use it on the clean clip, before any noise is mixed in."""
    loud = np.flatnonzero(np.abs(np.asarray(pcm, dtype=np.int32)) > threshold)
    if not len(loud):
        return 0, 0
    return int(loud[0]), int(loud[-1])


def white_noise(n: int, seed: int) -> np.ndarray:
    """`n` samples of Gaussian white noise at `NOISE_RMS` (fan, hiss)."""
    rng = np.random.default_rng(seed)
    return _at_noise_level(rng.standard_normal(n))


def pink_noise(n: int, seed: int) -> np.ndarray:
    """`n` samples of 1/f noise at `NOISE_RMS` (traffic, rain, a room's rumble): white noise
    shaped in the frequency domain, its DC left out."""
    if n < 2:
        return np.zeros(n, np.int16)
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[0] = 0.0
    spectrum[1:] /= np.sqrt(freqs[1:])
    return _at_noise_level(np.fft.irfft(spectrum, n))


def babble(n: int, seed: int, talkers: int = 6) -> np.ndarray:
    """`n` samples of `talkers` people talking at once at `NOISE_RMS` (a café, a television),
    the hardest noise for the detector: it is speech. Each talker is a `TALKER_VOICES` voice
    saying `SENTENCES` back to back, started at a random point; none says the wake word."""
    rng = np.random.default_rng(seed)
    total = np.zeros(n, np.float64)
    for k in range(talkers):
        voice = TALKER_VOICES[int(rng.integers(len(TALKER_VOICES)))]
        speed = int(rng.choice(TALKER_SPEEDS))
        pitch = int(rng.choice(TALKER_PITCHES))
        seed_k = int(rng.integers(2**31)) + k
        talker = ordinary_speech(n + RATE, seed_k, voice, speed, pitch, gaps=(0.05, 0.3))
        start = int(rng.integers(RATE))
        total += talker[start : start + n].astype(np.float64) / max(_rms(talker), 1.0)
    return _at_noise_level(total)


def ordinary_speech(
    n: int,
    seed: int,
    voice: str | None = None,
    speed: int | None = None,
    pitch: int | None = None,
    gaps: tuple[float, float] = (0.2, 1.0),
) -> np.ndarray:
    """`n` samples of `SENTENCES` said one after another with pauses of `gaps` seconds between
    them (random within the range), in one talker's voice (`voice`/`speed`/`pitch`, or chosen
    from the talker lists by `seed`). Never the wake word: speech for false-activation runs."""
    rng = np.random.default_rng(seed)
    voice = voice or TALKER_VOICES[int(rng.integers(len(TALKER_VOICES)))]
    speed = speed or int(rng.choice(TALKER_SPEEDS))
    pitch = pitch or int(rng.choice(TALKER_PITCHES))
    out = np.zeros(n, np.int16)
    at = int(rng.uniform(*gaps) * RATE)
    while at < n:
        clip = synth(SENTENCES[int(rng.integers(len(SENTENCES)))], voice, speed, pitch)
        take = min(len(clip), n - at)
        out[at : at + take] = clip[:take]
        at += len(clip) + int(rng.uniform(*gaps) * RATE)
    return out


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`speech` with `noise` (at least as long; its first len(speech) samples) added so that the
    speech's RMS over its active part — `speech_bounds`, first to last audible sample — is
    `snr_db` above the noise's RMS over the whole clip. Measuring over the active part keeps the
    silence around a phrase from making the noise quieter than the figure says.

    Never clips: if the sum would exceed int16, speech and noise are scaled down together (the
    SNR stays as asked; the level drops) rather than distorted."""
    s = np.asarray(speech, dtype=np.float64)
    if len(noise) < len(s):
        raise ValueError(f"noise ({len(noise)} samples) is shorter than speech ({len(s)})")
    first, last = speech_bounds(speech)
    if last <= first:
        raise ValueError("the speech is silent: no level to set the noise against")
    nz = np.asarray(noise[: len(s)], dtype=np.float64)
    noise_rms = _rms(nz)
    if noise_rms == 0:
        raise ValueError("the noise is silent")
    gain = _rms(s[first : last + 1]) / noise_rms / 10 ** (snr_db / 20)
    mixed = s + gain * nz
    peak = float(np.max(np.abs(mixed)))
    if peak > 32767:
        mixed *= 32767 / peak
    return np.round(mixed).astype(np.int16)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def _at_noise_level(x: np.ndarray) -> np.ndarray:
    rms = _rms(x)
    scaled = x * (NOISE_RMS / rms) if rms else x
    return np.clip(np.round(scaled), -32768, 32767).astype(np.int16)
