/* Unit tests of the Home Assistant discovery settings (daemon/homeassistant.c); the discovery
 * itself runs against a real mosquitto in tests/integration/test_station.py. */
#include <criterion/criterion.h>
#include <string.h>

#include "daemon/homeassistant.h"

Test(homeassistant, object_ids_are_lower_case_with_underscores) {
    char id[128];
    bsd_ha_object_id("Parus_major", id);
    cr_assert_str_eq(id, "parus_major");
    bsd_ha_object_id("Sitta europaea (Eurasian nuthatch)", id);
    cr_assert_str_eq(id, "sitta_europaea__eurasian_nuthatch_");
    bsd_ha_object_id("Ñandú/+#", id);
    cr_assert_eq(strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789_"), strlen(id), "%s", id);
}

Test(homeassistant, bad_prefix_or_node_name_the_directive) {
    bs_error err;
    cr_assert_null(bsd_ha_new("home/+", "garden", &err));
    cr_assert(strstr(err.msg, "mqtt_homeassistant_prefix") != NULL, "%s", err.msg);
    cr_assert_null(bsd_ha_new("homeassistant", "my garden", &err));
    cr_assert(strstr(err.msg, "mqtt_homeassistant_node") != NULL, "%s", err.msg);
    cr_assert_null(bsd_ha_new("homeassistant", "", &err));
    bsd_ha *h = bsd_ha_new("homeassistant", "garden-1", &err);
    cr_assert_not_null(h, "%s", err.msg);
    const char *labels[] = {"Parus_major", "Sitta_europaea"};
    cr_assert_eq(bsd_ha_set_species(h, labels, 2), 0);
    bsd_mqtt_config mc = {0};
    bsd_ha_mqtt_hooks(h, &mc);
    cr_assert_str_eq(mc.subscription, "homeassistant/+/garden-1/+/config");
    cr_assert_not_null(mc.on_connected);
    bsd_ha_free(h);
}
