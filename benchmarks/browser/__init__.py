"""The Draw tab in headless Chromium (section 6) and the pens that draw on it."""
