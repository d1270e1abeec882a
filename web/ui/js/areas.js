// Areas (county → township → village) from the cameras' `area_path`.

import { t } from './i18n.js';

/** Every area prefix of the cameras, sorted, with its depth. */
export function areaPrefixes(cameras) {
  const map = new Map();
  for (const c of cameras) {
    const parts = (c.area_path || '').split('/').filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const key = parts.slice(0, i).join('/');
      if (!map.has(key)) map.set(key, { key, name: parts[i - 1], depth: i - 1 });
    }
  }
  return [...map.values()].sort((a, b) => a.key.localeCompare(b.key, 'zh-CN'));
}

/** [value, text] options for an area `<select>`, indented by depth; the first is "all". */
export function areaOptions(cameras, allLabel = t('all')) {
  return [['', allLabel], ...areaPrefixes(cameras).map((a) => [a.key, `${'　'.repeat(a.depth)}${a.name}`])];
}

/** True when `path` (a string `a/b/c` or an array) is inside area `prefix` (or no prefix). */
export function inArea(path, prefix) {
  if (!prefix) return true;
  const p = Array.isArray(path) ? path.join('/') : path || '';
  return p === prefix || p.startsWith(`${prefix}/`);
}
