# A streaming-indicator strategy: the RSI is updated once per bar (O(1))
# instead of recomputed over the window. Run it over the sample bars with
#   jailrun --profile strategy --bars examples/bars.csv --report - examples/rsi_strategy.py
import indicators

rsi = indicators.Rsi(14)
atr = indicators.Atr(14)


def on_bar_strategy(sdk, params):
    bar = sdk.candles[-1]
    rsi.update(bar["close"])
    atr.update(bar["high"], bar["low"], bar["close"])
    if not rsi.is_ready():
        return None
    if rsi.value() < params.get("oversold", 30):
        sdk.buy(action="buy_to_open", qty=1, order_type="limit", price=round(bar["close"] - atr.value() / 2, 2))
        return {"rsi": rsi.value(), "atr": atr.value()}
    if rsi.value() > params.get("overbought", 70):
        sdk.sell(action="sell_to_close", qty=1)
        return {"rsi": rsi.value(), "atr": atr.value()}
    return None
