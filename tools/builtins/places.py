"""Offline place -> IANA timezone lookup for get_date_time.

Every zone name gives its city ("America/New_York" -> "new york"); a short
table adds countries and big cities that are not zone names, in English and
Chinese (the model speaks both).
"""
from __future__ import annotations

import zoneinfo
from functools import lru_cache

ALIASES = {
    "Asia/Shanghai": ["china", "beijing", "peking", "shenzhen", "guangzhou", "hangzhou", "chengdu", "wuhan",
                      "nanjing", "xi'an", "suzhou", "tianjin", "中国", "北京", "上海", "深圳", "广州", "杭州",
                      "成都", "武汉", "南京", "西安", "苏州", "天津", "重庆"],
    "Asia/Hong_Kong": ["香港"],
    "Asia/Taipei": ["taiwan", "台湾", "台北"],
    "Asia/Tokyo": ["japan", "osaka", "kyoto", "日本", "东京", "大阪"],
    "Asia/Seoul": ["korea", "south korea", "韩国", "首尔"],
    "Asia/Singapore": ["新加坡"],
    "Asia/Kolkata": ["india", "mumbai", "delhi", "new delhi", "bangalore", "bengaluru", "印度"],
    "Asia/Dubai": ["uae", "united arab emirates", "abu dhabi", "迪拜"],
    "Europe/London": ["uk", "united kingdom", "england", "britain", "great britain", "scotland", "伦敦", "英国"],
    "Europe/Paris": ["france", "巴黎", "法国"],
    "Europe/Berlin": ["germany", "munich", "frankfurt", "hamburg", "德国", "柏林"],
    "Europe/Madrid": ["spain", "barcelona", "西班牙"],
    "Europe/Rome": ["italy", "milan", "意大利", "罗马"],
    "Europe/Moscow": ["russia", "莫斯科", "俄罗斯"],
    "America/New_York": ["washington", "washington dc", "boston", "miami", "philadelphia", "atlanta", "纽约",
                         "华盛顿"],
    "America/Chicago": ["houston", "dallas", "austin", "芝加哥"],
    "America/Denver": ["salt lake city"],
    "America/Los_Angeles": ["san francisco", "seattle", "san diego", "las vegas", "silicon valley", "洛杉矶",
                            "旧金山", "西雅图"],
    "America/Toronto": ["多伦多"],
    "America/Sao_Paulo": ["brazil", "rio de janeiro"],
    "Australia/Sydney": ["悉尼"],
    "UTC": ["utc", "gmt", "greenwich"],
}


@lru_cache(maxsize=1)
def _index() -> dict[str, str]:
    table: dict[str, str] = {}
    for zone in sorted(zoneinfo.available_timezones()):
        if "/" not in zone or zone.startswith(("Etc/", "SystemV/", "posix/", "right/")):
            continue
        city = zone.rsplit("/", 1)[1].replace("_", " ").lower()
        table.setdefault(city, zone)
        table.setdefault(zone.lower().replace("_", " "), zone)
    for zone, names in ALIASES.items():
        for name in names:
            table[name.lower()] = zone
    return table


def timezone_of(place: str) -> str | None:
    """The IANA zone for a place name (or a zone name), or None when unknown offline."""
    key = " ".join(place.strip().lower().replace("_", " ").split())
    table = _index()
    if key in table:
        return table[key]
    if place.strip() in zoneinfo.available_timezones():
        return place.strip()
    # "Paris, France" / "Shenzhen, China": try the parts, most specific first.
    for part in (p.strip() for p in key.replace("，", ",").split(",")):
        if part in table:
            return table[part]
    return None
