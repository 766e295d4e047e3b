"""An entry point may also name a single @tool function."""
from stepvoice.tools import tool


@tool
def flip_coin() -> str:
    """Flip a coin."""
    return "heads"
