# A strategy for profile strategy: np, pd, math, json and datetime are
# globals, no import needed. Check it with
#   jailrun --profile strategy --check examples/strategy.py
# and run it over the sample bars with
#   jailrun --profile strategy --bars examples/bars.csv --report /tmp/report.json examples/strategy.py


def on_bar_strategy(sdk, params):
    closes = np.array([c["close"] for c in sdk.candles[-20:]])
    if len(closes) < 20:
        return None
    mean, vol = closes.mean(), np.std(closes)
    buf = sdk.state.setdefault("buffer", [])
    buf.append(float(closes[-1]))
    if len(buf) > 1000:
        del buf[:len(buf) - 1000]  # keep only the last 1000
    if closes[-1] < mean - 2 * vol:
        sdk.buy(action="buy_to_open", qty=1, order_type="market")
    return {"mean": float(mean), "vol": float(vol)}
