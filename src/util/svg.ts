/**
 * Width of a chart's right-hand legend column: wide enough for its longest label (~7 px a character in
 * 12 px sans-serif) after `inset` px of swatch and gap, and never narrower than `min`; a chart's width is
 * its left margin + plot + this, so a long label widens the picture instead of being clipped.
 */
export function legendWidth(labels: readonly string[], inset: number, min: number): number {
  return Math.max(min, inset + 8 + 7 * Math.max(0, ...labels.map((l) => l.length)));
}
