"""The USSD engine: screens as data, a pure step function, the renderer and the session store. No Flask."""
