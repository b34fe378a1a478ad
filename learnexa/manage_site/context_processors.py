from .panels import banners


def site_banners(request):
    """What needs a site admin's attention, on every page (integrations provide it)."""
    user = getattr(request, "user", None)
    if not (user and user.is_authenticated and user.is_site_admin):
        return {}
    return {"site_banners": [b for provider in banners for b in provider(user.company)]}
